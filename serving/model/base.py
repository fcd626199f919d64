"""The base of the detector family: its output, its loss, and the transformers model class every
architecture (serving.model.detector) derives from, with the freeze helpers."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils.generic import ModelOutput

from serving.errors import CheckpointError
from serving.model.config import DetectorConfig
from serving.model.hub import DetectorHubConfig, hub_config


@dataclass
class DetectorOutput(ModelOutput):
    """``loss`` only when labels were given; ``logits_a`` is (batch,), ``logits_b`` (batch, G)."""

    loss: torch.Tensor | None = None
    logits_a: torch.Tensor | None = None
    logits_b: torch.Tensor | None = None


def detector_loss(
    logits_a: torch.Tensor,
    logits_b: torch.Tensor,
    labels_a: torch.Tensor,
    labels_b: torch.Tensor,
) -> torch.Tensor:
    """BCE on Task A over the batch plus cross-entropy on Task B over the true-AI items only.

    Task B's term is the mean over items whose Label_A is 1, and exactly zero (with a gradient
    path, so distributed training stays in step) when the batch holds none.
    """
    loss_a = F.binary_cross_entropy_with_logits(logits_a.float(), labels_a.float())
    per_item_b = F.cross_entropy(logits_b.float(), labels_b.long(), reduction="none")
    is_ai = (labels_a == 1).float()
    loss_b = (per_item_b * is_ai).sum() / is_ai.sum().clamp(min=1.0)
    return loss_a + loss_b


class Detector(PreTrainedModel):
    """Base of the family; subclasses implement ``encode_image``, ``encode_text``, ``_logits``.

    A transformers model: ``save_pretrained``, ``from_pretrained`` and ``AutoModel`` work on it
    (each architecture is its own ``model_type``). ``detector_config`` is the validated
    :class:`~serving.model.config.DetectorConfig` the model was built from; ``config`` its
    transformers twin.
    """

    config_class: type[DetectorHubConfig] = DetectorHubConfig
    base_model_prefix = "detector"
    main_input_name = "pixel_values"

    def __init__(self, config: DetectorHubConfig | DetectorConfig) -> None:
        hub = config if isinstance(config, DetectorHubConfig) else hub_config(config)
        super().__init__(hub)
        self.detector_config = hub.detector()
        self.backbones_frozen = False

    def save_pretrained(  # type: ignore[override]  # the same call, one default changed
        self, save_directory: str | os.PathLike[str], *args: Any, **kwargs: Any
    ) -> None:
        """As transformers saves, but with the weights under the modules' own names
        (``save_original_format=False``): some backbones (DINOv2) rename their tensors on
        disk, which the project's loader and the Trainer's best-epoch reload do not undo."""
        kwargs.setdefault("save_original_format", False)
        super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_pretrained(  # type: ignore[override]  # the same call, stricter
        cls, pretrained_model_name_or_path: str | os.PathLike[str], *args: Any, **kwargs: Any
    ) -> Any:
        """As transformers loads, but a checkpoint that lacks a tensor of the model, or holds one
        it has not, is refused (CheckpointError) where transformers would initialise the missing
        ones at random with a warning: a detector with a random head answers anything."""
        wanted = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs
        )
        wrong = {k: sorted(info.get(k) or ()) for k in ("missing_keys", "unexpected_keys")}
        if any(wrong.values()):
            raise CheckpointError(
                f"the weights do not match the model: missing {wrong['missing_keys'][:5]}, "
                f"unexpected {wrong['unexpected_keys'][:5]}",
                str(pretrained_model_name_or_path),
            )
        return (model, info) if wanted else model

    @property
    def n_generators(self) -> int:
        return len(self.detector_config.generators)

    def _init_weights(self, module: nn.Module) -> None:
        """The heads start as torch initialises a Linear layer (the backbones init themselves)."""
        if isinstance(module, nn.Linear):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1 / math.sqrt(module.in_features) if module.in_features > 0 else 0.0
                init.uniform_(module.bias, -bound, bound)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Image features, shape (batch, dim)."""
        raise NotImplementedError

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Text features, shape (batch, dim)."""
        raise NotImplementedError

    def _logits(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels_a: torch.Tensor | None = None,
        labels_b: torch.Tensor | None = None,
    ) -> DetectorOutput:
        """Logits for a batch; the multi-task loss too when both label tensors are given."""
        logits_a, logits_b = self._logits(pixel_values, input_ids, attention_mask)
        loss = None
        if labels_a is not None and labels_b is not None:
            loss = detector_loss(logits_a, logits_b, labels_a, labels_b)
        return DetectorOutput(loss=loss, logits_a=logits_a, logits_b=logits_b)

    # Freeze helpers. Subclasses name their encoders in ``_vision`` / ``_text``.
    def _vision(self) -> list[nn.Module]:
        return []

    def _text(self) -> list[nn.Module]:
        return []

    def _always_frozen(self) -> list[nn.Parameter]:
        return []

    def freeze_vision(self) -> None:
        """Stop training the image encoder (the heads and the text side keep training)."""
        _set_trainable(self._vision(), trainable=False)

    def freeze_text(self) -> None:
        """Stop training the text encoder."""
        _set_trainable(self._text(), trainable=False)

    def freeze_backbones(self) -> None:
        """Linear-probe mode: both encoders frozen and kept in eval mode (no dropout), only the
        heads train. ValueError for clip-contrastive, which has no heads."""
        if not self._heads():
            raise ValueError(
                f"{self.detector_config.architecture} has no heads of its own to train with the "
                "backbones frozen; use fused or clip-linear for a linear probe"
            )
        self.freeze_vision()
        self.freeze_text()
        self.backbones_frozen = True
        self.train(self.training)

    def unfreeze(self) -> None:
        """Make every parameter trainable again (except those the architecture always fixes)."""
        _set_trainable([self], trainable=True)
        for parameter in self._always_frozen():
            parameter.requires_grad_(False)
        self.backbones_frozen = False

    def _heads(self) -> list[nn.Module]:
        return []

    def train(self, mode: bool = True) -> Detector:
        """As nn.Module.train, except that frozen backbones stay in eval mode."""
        super().train(mode)
        if self.backbones_frozen:
            for module in (*self._vision(), *self._text()):
                module.eval()
        return self


def _set_trainable(modules: list[nn.Module], *, trainable: bool) -> None:
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad_(trainable)

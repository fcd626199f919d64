"""The detector family: one output, one loss, three architectures.

Every architecture maps an image (and, for ``fused``, its caption) to ``logits_a`` (one logit per
item: AI-generated vs human) and ``logits_b`` (one logit per generator of the checkpoint).
Encoders are transformers modules built from the configs in
:class:`~serving.model.config.DetectorConfig`;
pre-trained weights arrive through :mod:`serving.model.presets` or a checkpoint, never from a hub.

Every trainable parameter takes part in every forward pass (BERT's unused pooler is not built,
CLIP's learned logit scale is frozen in favour of the fixed prompt temperature), so the models run
under DistributedDataParallel without ``find_unused_parameters``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch import nn
from transformers import (
    BertConfig,
    BertModel,
    CLIPConfig,
    CLIPModel,
    CLIPVisionConfig,
    CLIPVisionModel,
)
from transformers.tokenization_utils_base import PreTrainedTokenizerBase
from transformers.utils.generic import ModelOutput

from serving.model.config import DetectorConfig


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


class Detector(nn.Module):
    """Base of the family; subclasses implement ``encode_image``, ``encode_text``, ``_logits``."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        # Not named `config`: the Trainer treats a `config` attribute as a transformers config.
        self.detector_config = config

    @property
    def n_generators(self) -> int:
        return len(self.detector_config.generators)

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

    def unfreeze(self) -> None:
        """Make every parameter trainable again (except those the architecture always fixes)."""
        _set_trainable([self], trainable=True)
        for parameter in self._always_frozen():
            parameter.requires_grad_(False)


def _set_trainable(modules: list[nn.Module], *, trainable: bool) -> None:
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad_(trainable)


class FusedDetector(Detector):
    """NAU-QMUL: BERT [CLS] of the caption + CLIP vision pooled output -> Linear+ReLU -> 2 heads.

    A missing caption is fed as the empty string, i.e. ``[CLS] [SEP]``: the paper system always
    tokenises the caption column as it is, so "no caption" is an empty caption to it as well.
    """

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__(config)
        assert config.text_config is not None  # checked by DetectorConfig
        self.text = BertModel(BertConfig(**config.text_config), add_pooling_layer=False)
        self.vision = CLIPVisionModel(CLIPVisionConfig(**config.vision_config))
        width = self.text.config.hidden_size + self.vision.config.hidden_size
        self.fuse = nn.Sequential(nn.Linear(width, config.hidden_size), nn.ReLU())
        self.dropout = nn.Dropout(config.dropout)
        self.head_a = nn.Linear(config.hidden_size, 1)
        self.head_b = nn.Linear(config.hidden_size, self.n_generators)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled: torch.Tensor = self.vision(pixel_values=pixel_values).pooler_output
        return pooled

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden: torch.Tensor = self.text(input_ids, attention_mask=attention_mask).last_hidden_state
        return hidden[:, 0]  # [CLS]

    def _logits(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if input_ids is None or attention_mask is None:
            raise ValueError(
                "the fused detector reads the caption: pass input_ids and attention_mask "
                "(serving.model.preprocess encodes a missing caption as the empty string)"
            )
        return self.fused_logits(
            self.encode_text(input_ids, attention_mask), self.encode_image(pixel_values)
        )

    def fused_logits(
        self, text_features: torch.Tensor, image_features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Head A and head B logits from each encoder's features (the caption's may be cached)."""
        hidden = self.dropout(self.fuse(torch.cat([text_features, image_features], dim=-1)))
        return self.head_a(hidden).squeeze(-1), self.head_b(hidden)

    def _vision(self) -> list[nn.Module]:
        return [self.vision]

    def _text(self) -> list[nn.Module]:
        return [self.text]


class ClipLinearDetector(Detector):
    """arXiv 2404.08788: the CLIP vision encoder with linear heads for Task A and Task B."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__(config)
        self.vision = CLIPVisionModel(CLIPVisionConfig(**config.vision_config))
        width = self.vision.config.hidden_size
        self.dropout = nn.Dropout(config.dropout)
        self.head_a = nn.Linear(width, 1)
        self.head_b = nn.Linear(width, self.n_generators)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled: torch.Tensor = self.vision(pixel_values=pixel_values).pooler_output
        return pooled

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        raise ValueError("the clip-linear detector has no text encoder; it reads images only")

    def _logits(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.dropout(self.encode_image(pixel_values))
        return self.head_a(features).squeeze(-1), self.head_b(features)

    def _vision(self) -> list[nn.Module]:
        return [self.vision]


class ClipContrastiveDetector(Detector):
    """CLIP fine-tuned against class prompts; logits are prompt similarities / temperature.

    Task A's logit is sim(AI prompt) - sim(real prompt), so its sigmoid equals the two-prompt
    softmax and BCE on it is the contrastive loss against the two prompts; Task B's logits are
    the similarities to one prompt per generator. Captions are not read. There are no new layers,
    so with pre-trained CLIP weights the model works zero-shot before any fine-tuning.
    """

    def __init__(
        self,
        config: DetectorConfig,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
    ) -> None:
        super().__init__(config)
        assert config.text_config is not None  # checked by DetectorConfig
        self.clip = CLIPModel(
            CLIPConfig(
                text_config=config.text_config,
                vision_config=config.vision_config,
                projection_dim=config.projection_dim,
            )
        )
        # The temperature is fixed (config.prompt_temperature); CLIP's learned scale stays unused.
        self.clip.logit_scale.requires_grad_(False)
        expected = 2 + self.n_generators
        if prompt_ids.shape[0] != expected:
            raise ValueError(f"expected {expected} tokenised prompts, got {prompt_ids.shape[0]}")
        # Not saved with the weights: rebuilt from the tokenizer and the config's prompts at load.
        self.register_buffer("prompt_ids", prompt_ids, persistent=False)
        self.register_buffer("prompt_mask", prompt_mask, persistent=False)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled = self.clip.vision_model(pixel_values=pixel_values).pooler_output
        return F.normalize(self.clip.visual_projection(pooled), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.clip.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return F.normalize(self.clip.text_projection(pooled.pooler_output), dim=-1)

    def _logits(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images = self.encode_image(pixel_values)
        prompts = self.encode_text(self.prompt_ids, self.prompt_mask)
        similarity = images @ prompts.T / self.detector_config.prompt_temperature
        logits_a = similarity[:, 1] - similarity[:, 0]
        return logits_a, similarity[:, 2:]

    def _vision(self) -> list[nn.Module]:
        return [self.clip.vision_model, self.clip.visual_projection]

    def _text(self) -> list[nn.Module]:
        return [self.clip.text_model, self.clip.text_projection]

    def _always_frozen(self) -> list[nn.Parameter]:
        return [self.clip.logit_scale]


def build_detector(
    config: DetectorConfig, tokenizer: PreTrainedTokenizerBase | None = None
) -> Detector:
    """A randomly initialised detector of ``config.architecture``.

    clip-contrastive needs the ``tokenizer`` to turn its class prompts into token ids.
    """
    if config.architecture == "fused":
        return FusedDetector(config)
    if config.architecture == "clip-linear":
        return ClipLinearDetector(config)
    if tokenizer is None:
        raise ValueError("clip-contrastive needs its tokenizer to encode the class prompts")
    prompts = [*config.prompts_a, *config.class_prompts_b]
    encoded = tokenizer(prompts, padding="longest", truncation=True, return_tensors="pt")
    return ClipContrastiveDetector(config, encoded["input_ids"], encoded["attention_mask"])

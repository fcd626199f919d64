"""The detector family: one output, one loss, three architectures.

Every architecture maps an image (and, for ``fused``, its caption) to ``logits_a`` (one logit per
item: AI-generated vs human) and ``logits_b`` (one logit per generator of the checkpoint).
Encoders are transformers modules built from the configs in
:class:`~serving.model.config.DetectorConfig` (any backbone ``AutoModel`` knows,
:mod:`serving.model.backbones`); pre-trained weights arrive through :mod:`serving.model.presets`
or a checkpoint. Importing this module registers the three architectures with ``AutoConfig`` and
``AutoModel`` (model types ``aigis-fused``, ``aigis-clip-linear``, ``aigis-clip-contrastive``).

Every trainable parameter takes part in every forward pass (BERT's unused pooler is not built,
CLIP's learned logit scale is frozen in favour of the fixed prompt temperature), so the models run
under DistributedDataParallel without ``find_unused_parameters``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch import nn
from transformers import AutoConfig, AutoModel, CLIPConfig, CLIPModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from serving.model.backbones import build_encoder, first_token, pooled_image
from serving.model.base import Detector, DetectorOutput, detector_loss
from serving.model.config import DetectorConfig
from serving.model.hub import (
    ClipContrastiveConfig,
    ClipLinearConfig,
    DetectorHubConfig,
    FusedConfig,
)

__all__ = [
    "ClipContrastiveDetector",
    "ClipLinearDetector",
    "Detector",
    "DetectorOutput",
    "FusedDetector",
    "build_detector",
    "detector_loss",
]


class FusedDetector(Detector):
    """NAU-QMUL: BERT [CLS] of the caption + CLIP vision pooled output -> Linear+ReLU -> 2 heads.

    Both encoders are the config's (BERT and CLIP ViT-B/32 by default; any text and vision
    backbone, serving.model.backbones). A missing caption is fed as the empty string, i.e.
    ``[CLS] [SEP]``: the paper system always tokenises the caption column as it is, so "no
    caption" is an empty caption to it as well.
    """

    config_class = FusedConfig

    def __init__(self, config: DetectorHubConfig | DetectorConfig) -> None:
        super().__init__(config)
        settings = self.detector_config
        assert settings.text_config is not None  # checked by DetectorConfig
        self.text = build_encoder(settings.text_config, text=True)
        self.vision = build_encoder(settings.vision_config)
        width = settings.text_config["hidden_size"] + settings.vision_config["hidden_size"]
        self.fuse = nn.Sequential(nn.Linear(width, settings.hidden_size), nn.ReLU())
        self.dropout = nn.Dropout(settings.dropout)
        self.head_a = nn.Linear(settings.hidden_size, 1)
        self.head_b = nn.Linear(settings.hidden_size, self.n_generators)
        self.post_init()

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return pooled_image(self.vision, pixel_values)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden: torch.Tensor = self.text(input_ids, attention_mask=attention_mask).last_hidden_state
        return first_token(hidden)

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

    def _heads(self) -> list[nn.Module]:
        return [self.fuse, self.head_a, self.head_b]


class ClipLinearDetector(Detector):
    """arXiv 2404.08788: a vision encoder (CLIP's by default, any vision backbone) with linear
    heads for Task A and Task B."""

    config_class = ClipLinearConfig

    def __init__(self, config: DetectorHubConfig | DetectorConfig) -> None:
        super().__init__(config)
        settings = self.detector_config
        self.vision = build_encoder(settings.vision_config)
        width = settings.vision_config["hidden_size"]
        self.dropout = nn.Dropout(settings.dropout)
        self.head_a = nn.Linear(width, 1)
        self.head_b = nn.Linear(width, self.n_generators)
        self.post_init()

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return pooled_image(self.vision, pixel_values)

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

    def _heads(self) -> list[nn.Module]:
        return [self.head_a, self.head_b]


class ClipContrastiveDetector(Detector):
    """CLIP fine-tuned against class prompts; logits are prompt similarities / temperature.

    Task A's logit is sim(AI prompt) - sim(real prompt), so its sigmoid equals the two-prompt
    softmax and BCE on it is the contrastive loss against the two prompts; Task B's logits are
    the similarities to one prompt per generator. Captions are not read. There are no new layers,
    so with pre-trained CLIP weights the model works zero-shot before any fine-tuning. Its
    encoders must be a CLIP pair (CLIP text and CLIP vision configs of any size).
    """

    config_class = ClipContrastiveConfig

    def __init__(self, config: DetectorHubConfig | DetectorConfig) -> None:
        super().__init__(config)
        settings = self.detector_config
        assert settings.text_config is not None  # checked by DetectorConfig
        kinds = (settings.text_config["model_type"], settings.vision_config["model_type"])
        if kinds != ("clip_text_model", "clip_vision_model"):
            raise ValueError(
                f"clip-contrastive needs CLIP text and vision encoders, not {' and '.join(kinds)}; "
                "use fused or clip-linear for other backbones"
            )
        if not settings.prompt_token_ids:
            raise ValueError(
                "clip-contrastive needs its tokenised prompts: build it with "
                "build_detector(config, tokenizer)"
            )
        self.clip = CLIPModel(
            CLIPConfig(
                text_config=settings.text_config,
                vision_config=settings.vision_config,
                projection_dim=settings.projection_dim,
            )
        )
        # The temperature is fixed (config.prompt_temperature); CLIP's learned scale stays unused.
        self.clip.logit_scale.requires_grad_(False)
        ids, mask = _padded(settings.prompt_token_ids, settings.text_config.get("pad_token_id"))
        # Saved with the weights, so from_pretrained (which builds on the meta device) has them.
        self.register_buffer("prompt_ids", ids)
        self.register_buffer("prompt_mask", mask)
        self.post_init()

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


def _padded(
    prompts: tuple[tuple[int, ...], ...], pad_id: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids padded on the right to the longest prompt, and their attention mask."""
    longest = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), longest), pad_id or 0, dtype=torch.long)
    mask = torch.zeros((len(prompts), longest), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, : len(prompt)] = torch.tensor(prompt, dtype=torch.long)
        mask[row, : len(prompt)] = 1
    return ids, mask


def tokenised_prompts(
    config: DetectorConfig, tokenizer: PreTrainedTokenizerBase
) -> tuple[tuple[int, ...], ...]:
    """The class prompts of a clip-contrastive config as token ids, without padding."""
    prompts = [*config.prompts_a, *config.class_prompts_b]
    encoded = tokenizer(prompts, truncation=True)
    return tuple(tuple(int(i) for i in ids) for ids in encoded["input_ids"])


ARCHITECTURE_CLASSES: dict[str, type[Detector]] = {
    "fused": FusedDetector,
    "clip-linear": ClipLinearDetector,
    "clip-contrastive": ClipContrastiveDetector,
}


def build_detector(
    config: DetectorConfig, tokenizer: PreTrainedTokenizerBase | None = None
) -> Detector:
    """A randomly initialised detector of ``config.architecture``.

    clip-contrastive needs the ``tokenizer`` to turn its class prompts into token ids, unless the
    config already holds them; the model's ``detector_config`` then holds them.
    """
    if config.architecture == "clip-contrastive" and not config.prompt_token_ids:
        if tokenizer is None:
            raise ValueError("clip-contrastive needs its tokenizer to encode the class prompts")
        config = config.model_copy(
            update={"prompt_token_ids": tokenised_prompts(config, tokenizer)}
        )
    return ARCHITECTURE_CLASSES[config.architecture](config)


def _register() -> None:
    """Make AutoConfig and AutoModel know the three architectures (once per process)."""
    for architecture, model_class in ARCHITECTURE_CLASSES.items():
        hub_class = model_class.config_class
        if hub_class.model_type not in CONFIG_MAPPING:
            AutoConfig.register(hub_class.model_type, hub_class)
            AutoModel.register(hub_class, model_class)
        assert hub_class.architecture_name == architecture


_register()

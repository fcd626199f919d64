"""Encoders as configuration: any Hugging Face backbone ``AutoModel`` builds from its config.

A vision backbone's image feature is its pooled output (CLIP: the post-layer-normed class token;
SigLIP: its attention-pooling head; DINOv2: the layer-normed class token; ViT: its pooler), or
the first token of the last hidden state for a model without one. A text backbone's caption
feature is its first token ([CLS] for BERT). The image pre-processing of each family (mean and
std) comes from its image processor: :func:`family_normalisation` for configs built here,
``preprocessor_config.json`` for downloaded ones (serving.model.pretrained).
"""

from __future__ import annotations

import inspect
from typing import Any, Final

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig
from transformers.models.auto.modeling_auto import MODEL_MAPPING

from serving.model.config import CLIP_MEAN, CLIP_STD

__all__ = [
    "TINY_VISION_FAMILIES",
    "build_encoder",
    "encoder_class",
    "family_normalisation",
    "first_token",
    "pooled_image",
    "tiny_vision_config",
]

IMAGENET_MEAN: Final = (0.485, 0.456, 0.406)
IMAGENET_STD: Final = (0.229, 0.224, 0.225)
HALF: Final = (0.5, 0.5, 0.5)

# The normalisation each family's image processor applies (transformers' defaults for it).
_NORMALISATION: Final[dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]]] = {
    "clip_vision_model": (CLIP_MEAN, CLIP_STD),
    "siglip_vision_model": (HALF, HALF),
    "siglip2_vision_model": (HALF, HALF),
    "dinov2": (IMAGENET_MEAN, IMAGENET_STD),
    "vit": (HALF, HALF),
}

# Small configs of each vision family (width 64, two layers): built offline, trained in tests.
_TINY: Final[dict[str, dict[str, Any]]] = {
    "clip": {"model_type": "clip_vision_model", "patch_size": 32, "projection_dim": 64},
    "siglip": {"model_type": "siglip_vision_model", "patch_size": 32},
    "dinov2": {"model_type": "dinov2", "patch_size": 32, "mlp_ratio": 2},
    "vit": {"model_type": "vit", "patch_size": 32},
}
TINY_VISION_FAMILIES: Final[tuple[str, ...]] = tuple(_TINY)


def tiny_vision_config(family: str, image_size: int) -> PretrainedConfig:
    """A small vision backbone config of ``family`` (one of TINY_VISION_FAMILIES)."""
    if family not in _TINY:
        raise ValueError(
            f"unknown tiny vision backbone {family!r}; use one of {', '.join(_TINY)} "
            "(a hub model id or a directory needs --preset base)"
        )
    values = dict(_TINY[family])
    kind = values.pop("model_type")
    sizes = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    if kind != "dinov2":  # DINOv2 sizes its MLP by mlp_ratio
        sizes["intermediate_size"] = 128
    return AutoConfig.for_model(kind, image_size=image_size, **sizes, **values)


def family_normalisation(
    vision_config: dict[str, Any],
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The image mean and std of a vision backbone's family (CLIP's for an unknown one)."""
    return _NORMALISATION.get(str(vision_config.get("model_type")), (CLIP_MEAN, CLIP_STD))


def encoder_class(config: PretrainedConfig) -> type[nn.Module]:
    """The model class ``AutoModel`` builds for ``config``; ValueError for an unknown type."""
    try:
        found: type[nn.Module] = MODEL_MAPPING[type(config)]
    except KeyError:
        raise ValueError(
            f"no transformers model for a config of type {config.model_type!r}; name a backbone "
            "whose model AutoModel knows (CLIP vision, SigLIP vision, DINOv2, ViT, BERT, ...)"
        ) from None
    return found


def build_encoder(values: dict[str, Any], *, text: bool = False) -> nn.Module:
    """A randomly initialised encoder from a config dict with its ``model_type``.

    A text encoder is built without the pooling layer where its class has one to leave out (BERT's
    is never used: the caption feature is [CLS]), so every parameter takes part in the forward
    pass and distributed training needs no unused-parameter search.
    """
    config = AutoConfig.for_model(**values)
    kwargs: dict[str, Any] = {}
    if text and "add_pooling_layer" in inspect.signature(encoder_class(config)).parameters:
        kwargs["add_pooling_layer"] = False
    encoder: nn.Module = AutoModel.from_config(config, **kwargs)
    return encoder


def pooled_image(encoder: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """The image feature of a vision backbone, shape (batch, hidden)."""
    output = encoder(pixel_values=pixel_values)
    pooled: torch.Tensor | None = getattr(output, "pooler_output", None)
    if pooled is None:
        return first_token(output.last_hidden_state)
    return pooled


def first_token(hidden: torch.Tensor) -> torch.Tensor:
    """The first position of a last hidden state: [CLS] for BERT-style encoders."""
    return hidden[:, 0]

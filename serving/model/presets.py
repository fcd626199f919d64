"""Presets: where a new detector's encoders come from.

- ``tiny``: small encoders built from configs, random weights, a generated WordPiece vocabulary.
  Trains in seconds on a CPU; what tests and the demo use. Its vision encoder is a small member
  of a backbone family (``vision_backbone``: clip, siglip, dinov2 or vit; CLIP by default).
- ``base-random``: bert-base-uncased and CLIP ViT-B/32 shapes with random weights and a generated
  30,522-entry vocabulary; what performance is measured on.
- ``base``: pre-trained encoders, the paper's bert-base-uncased and openai/clip-vit-base-patch32
  unless ``vision_backbone`` / ``text_backbone`` name other Hugging Face models (a hub id or a
  directory), loaded the Hugging Face way (serving.model.pretrained).

All three return the same :class:`~serving.model.checkpoint.Checkpoint` that
:func:`serving.model.checkpoint.load_checkpoint` returns, so everything downstream has one
code path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from transformers import BertConfig, CLIPTextConfig, CLIPVisionConfig
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from schemas.labels import GENERATORS
from serving.model.backbones import family_normalisation, tiny_vision_config
from serving.model.checkpoint import Checkpoint
from serving.model.config import Architecture, DetectorConfig, PreprocessConfig
from serving.model.detector import build_detector
from serving.model.hub import config_dict
from serving.model.preprocess import make_image_processor
from serving.model.pretrained import BERT_ID, CLIP_ID, Backbones, build_pretrained
from serving.model.vocab import BERT_BASE_VOCAB_SIZE, generated_tokenizer

__all__ = ["BERT_ID", "CLIP_ID", "PRESETS", "Backbones", "build_preset", "config_dict"]

PRESETS: Final[tuple[str, ...]] = ("tiny", "base", "base-random")
CLIP_TEXT_VOCAB_SIZE: Final[int] = 49_408
_TINY_WIDTH: Final[dict[str, int]] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
}


def build_preset(
    preset: str,
    architecture: Architecture,
    *,
    generators: tuple[str, ...] = GENERATORS,
    pretrained_dir: str | Path | None = None,
    name: str = "aigis-detector",
    version: str = "0",
    backbones: Backbones | None = None,
) -> Checkpoint:
    """A new detector of ``architecture`` with encoders from ``preset`` and fresh heads.

    ``pretrained_dir`` only matters for ``base``; ``backbones`` names the encoders (a family for
    ``tiny``, hub ids or directories for ``base``) and whether downloads are allowed. Raises
    CheckpointError when ``base`` weights cannot be had, ValueError for an unknown preset or a
    backbone the preset or architecture cannot use.
    """
    backbones = backbones or Backbones()
    common: dict[str, Any] = {
        "name": name,
        "version": version,
        "architecture": architecture,
        "preset": preset,
        "generators": generators,
    }
    if preset == "tiny":
        return _random(_tiny(architecture, common, backbones))
    if preset == "base-random":
        if backbones.vision or backbones.text:
            raise ValueError(
                "base-random has the paper's encoder shapes; name backbones with --preset tiny "
                "(a family) or --preset base (a hub id or directory)"
            )
        return _random(_base_random(architecture, common))
    if preset == "base":
        return build_pretrained(architecture, common, pretrained_dir, backbones)
    raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")


def _random(spec: tuple[DetectorConfig, PreTrainedTokenizerBase]) -> Checkpoint:
    config, tokenizer = spec
    model = build_detector(config, tokenizer)
    image_processor = make_image_processor(config.preprocess)
    return Checkpoint(model.detector_config, model, tokenizer, image_processor)


def _tiny(
    architecture: Architecture, common: dict[str, Any], backbones: Backbones
) -> tuple[DetectorConfig, PreTrainedTokenizerBase]:
    if backbones.text:
        raise ValueError(
            "the tiny preset's text encoder is a small BERT (or CLIP text); "
            "name a text backbone with --preset base"
        )
    family = backbones.vision or "clip"
    if architecture == "clip-contrastive" and family != "clip":
        raise ValueError(
            f"clip-contrastive needs a CLIP vision encoder, not {family}; use fused or "
            "clip-linear for other backbones"
        )
    vision = config_dict(tiny_vision_config(family, image_size=224))
    mean, std = family_normalisation(vision)
    preprocess = PreprocessConfig(max_caption_tokens=64, image_mean=mean, image_std=std)
    tokenizer = generated_tokenizer(None, preprocess.max_caption_tokens)
    text = _text_config(
        architecture,
        tokenizer,
        **_TINY_WIDTH,
        max_position_embeddings=preprocess.max_caption_tokens,
    )
    config = DetectorConfig(
        **common,
        text_config=text,
        vision_config=vision,
        projection_dim=64,
        hidden_size=64,
        preprocess=preprocess,
    )
    return config, tokenizer


def _base_random(
    architecture: Architecture, common: dict[str, Any]
) -> tuple[DetectorConfig, PreTrainedTokenizerBase]:
    preprocess = PreprocessConfig()
    # The contrastive text tower is CLIP's, whose embedding table has 49,408 rows.
    size = CLIP_TEXT_VOCAB_SIZE if architecture == "clip-contrastive" else BERT_BASE_VOCAB_SIZE
    tokenizer = generated_tokenizer(size, preprocess.max_caption_tokens)
    if architecture == "clip-contrastive":
        text = _clip_text_config(tokenizer, CLIPTextConfig())
    elif architecture == "fused":
        text = config_dict(BertConfig())
    else:
        text = None
    config = DetectorConfig(
        **common,
        text_config=text,
        vision_config=config_dict(CLIPVisionConfig()),  # the defaults are ViT-B/32's
        preprocess=preprocess,
    )
    return config, tokenizer


def _text_config(
    architecture: Architecture, tokenizer: PreTrainedTokenizerBase, **sizes: Any
) -> dict[str, Any] | None:
    if architecture == "fused":
        return config_dict(BertConfig(vocab_size=len(tokenizer), **sizes))
    if architecture == "clip-contrastive":
        return _clip_text_config(tokenizer, CLIPTextConfig(**sizes))
    return None


def _clip_text_config(tokenizer: PreTrainedTokenizerBase, text: CLIPTextConfig) -> dict[str, Any]:
    """A CLIP text config that reads a generated WordPiece vocabulary.

    CLIP pools the text at the first end-of-text token; with a WordPiece vocabulary that is [SEP].
    """
    text.vocab_size = len(tokenizer)
    text.pad_token_id = tokenizer.pad_token_id
    text.bos_token_id = tokenizer.cls_token_id
    text.eos_token_id = tokenizer.sep_token_id
    return config_dict(text)

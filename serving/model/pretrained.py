"""The ``base`` preset: pre-trained encoders, loaded the Hugging Face way.

Each encoder is a Hugging Face model named by id or directory (the paper's bert-base-uncased and
openai/clip-vit-base-patch32 by default). It is read from ``<pretrained_dir>/<name>`` when a
directory is given (or ``AIGIS_PRETRAINED_DIR``), else from the name itself: a local directory,
the Hugging Face cache, or a download from the hub unless ``HF_HUB_OFFLINE=1`` or
``local_files_only``. When an encoder cannot be had, one CheckpointError names every missing one
with the ``hf download`` command for each.

A vision backbone may be a vision model (DINOv2, ViT) or a dual encoder whose vision tower is
taken (CLIP, SigLIP); its image size, mean and std come from its image processor
(``preprocessor_config.json``) when it has one, else from its config and family.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from torch import nn
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoTokenizer,
    CLIPModel,
    PretrainedConfig,
)
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from schemas.settings import load_settings
from serving.errors import CheckpointError
from serving.model.backbones import encoder_class, family_normalisation
from serving.model.checkpoint import Checkpoint
from serving.model.config import Architecture, DetectorConfig, PreprocessConfig
from serving.model.detector import ClipContrastiveDetector, build_detector
from serving.model.hub import config_dict
from serving.model.preprocess import make_image_processor
from serving.model.vocab import generated_tokenizer

BERT_ID: Final[str] = "bert-base-uncased"
CLIP_ID: Final[str] = "openai/clip-vit-base-patch32"


@dataclass(frozen=True)
class Backbones:
    """Which encoders a new detector gets. ``None`` is the preset's default."""

    vision: str | None = None
    """tiny: a family (clip, siglip, dinov2, vit); base: a hub id or a directory."""
    text: str | None = None
    """base only: a hub id or directory of a text encoder (fused)."""
    local_files_only: bool = False
    """Never download, as with ``HF_HUB_OFFLINE=1``."""


def build_pretrained(
    architecture: Architecture,
    common: dict[str, Any],
    pretrained_dir: str | Path | None,
    backbones: Backbones,
) -> Checkpoint:
    """A detector whose encoders hold pre-trained weights and whose heads are new."""
    vision_id = backbones.vision or CLIP_ID
    if architecture == "clip-contrastive":
        if backbones.text not in (None, vision_id):
            raise ValueError(
                "clip-contrastive takes both towers from one CLIP model: give --vision-backbone "
                "only"
            )
        ids: tuple[str, ...] = (vision_id,)
    elif architecture == "fused":
        ids = (backbones.text or BERT_ID, vision_id)
    else:
        ids = (vision_id,)
    paths = _locate(*ids, pretrained_dir=pretrained_dir, local_only=backbones.local_files_only)
    local = {p: _local_only(p, backbones.local_files_only) for p in paths}
    sources = dict(zip(("text", "vision") if len(ids) == 2 else ("vision",), ids, strict=True))
    try:
        if architecture == "clip-contrastive":
            return _contrastive(common, paths[0], local[paths[0]], sources)
        vision, preprocess = _vision(paths[-1], local[paths[-1]])
        if architecture == "fused":
            text, tokenizer = _text(paths[0], local[paths[0]], preprocess)
        else:
            text, tokenizer = None, generated_tokenizer(None, preprocess.max_caption_tokens)
    except OSError as exc:  # what from_pretrained raises when a download or a file fails
        failed = [i for i, p in zip(ids, paths, strict=True) if not Path(p).is_dir()] or list(ids)
        raise _missing(failed, f"loading failed: {exc}", pretrained_dir) from exc
    config = DetectorConfig(
        **common,
        sources=sources,
        text_config=config_dict(text.config) if text is not None else None,
        vision_config=config_dict(vision.config),
        preprocess=preprocess,
    )
    model = build_detector(config, tokenizer)
    model.vision.load_state_dict(vision.state_dict())
    if text is not None:
        model.text.load_state_dict(text.state_dict())
    return Checkpoint(model.detector_config, model, tokenizer, make_image_processor(preprocess))


def _vision(path: str, local_only: bool) -> tuple[nn.Module, PreprocessConfig]:
    """A vision backbone (the vision tower of a dual encoder) and its pre-processing."""
    config = AutoConfig.from_pretrained(path, local_files_only=local_only)
    tower = getattr(config, "vision_config", None)
    model_class: Any = encoder_class(tower if isinstance(tower, PretrainedConfig) else config)
    model: nn.Module = model_class.from_pretrained(path, local_files_only=local_only)
    return model, _preprocess(path, local_only, config_dict(model.config))


def _text(
    path: str, local_only: bool, preprocess: PreprocessConfig
) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """A text backbone without the pooling layer it never uses, and its tokenizer."""
    config = AutoConfig.from_pretrained(path, local_files_only=local_only)
    tower = getattr(config, "text_config", None)
    model_class: Any = encoder_class(tower if isinstance(tower, PretrainedConfig) else config)
    kwargs: dict[str, Any] = {"local_files_only": local_only}
    if "add_pooling_layer" in inspect.signature(model_class).parameters:
        kwargs["add_pooling_layer"] = False
    model: nn.Module = model_class.from_pretrained(path, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
    tokenizer.model_max_length = preprocess.max_caption_tokens
    return model, tokenizer


def _contrastive(
    common: dict[str, Any], path: str, local_only: bool, sources: dict[str, str]
) -> Checkpoint:
    clip = CLIPModel.from_pretrained(path, local_files_only=local_only)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
    preprocess = _preprocess(path, local_only, config_dict(clip.config.vision_config))
    config = DetectorConfig(
        **common,
        sources={"text": sources["vision"], "vision": sources["vision"]},
        text_config=config_dict(clip.config.text_config),
        vision_config=config_dict(clip.config.vision_config),
        projection_dim=clip.config.projection_dim,
        preprocess=preprocess,
    )
    model = build_detector(config, tokenizer)
    assert isinstance(model, ClipContrastiveDetector)
    model.clip.load_state_dict(clip.state_dict())
    model.clip.logit_scale.requires_grad_(False)
    return Checkpoint(model.detector_config, model, tokenizer, make_image_processor(preprocess))


def _preprocess(path: str, local_only: bool, vision: dict[str, Any]) -> PreprocessConfig:
    """Image size, mean and std from the backbone's image processor, else its config."""
    mean, std = family_normalisation(vision)
    side = int(vision.get("image_size") or 224)
    try:
        processor = AutoImageProcessor.from_pretrained(path, local_files_only=local_only)
    except (OSError, ValueError):  # no preprocessor_config.json: the config and family decide
        return PreprocessConfig(image_size=side, image_mean=mean, image_std=std)
    size = getattr(processor, "crop_size", None) or getattr(processor, "size", None) or {}
    side = int(size.get("height") or size.get("shortest_edge") or side)
    return PreprocessConfig(
        image_size=side,
        image_mean=tuple(getattr(processor, "image_mean", None) or mean),
        image_std=tuple(getattr(processor, "image_std", None) or std),
    )


def _locate(
    *model_ids: str, pretrained_dir: str | Path | None, local_only: bool = False
) -> list[str]:
    """Where to load each of ``model_ids`` from, the Hugging Face way: a directory under
    ``pretrained_dir`` (or ``AIGIS_PRETRAINED_DIR``) when one is given, else the model id itself,
    which ``from_pretrained`` reads as a directory, from the Hugging Face cache or downloads from
    the hub. With ``HF_HUB_OFFLINE=1``, ``local_only`` or a directory given, nothing is
    downloaded.

    Raises one CheckpointError naming every encoder that cannot be had, not only the first.
    """
    root = pretrained_dir or load_settings().pretrained_dir
    found: list[str] = []
    missing: list[str] = []
    for model_id in model_ids:
        folder = model_id.rsplit("/", 1)[-1]
        candidates = [Path(root) / folder, Path(root) / model_id] if root else []
        local = [str(c) for c in candidates if (c / "config.json").is_file()]
        if local:
            found.append(local[0])
        elif not root and _reachable(model_id, local_only):
            found.append(model_id)
        else:
            missing.append(model_id)
    if missing:
        where = (
            f"{root} does not hold them"
            if root
            else "HF_HUB_OFFLINE=1 or local_files_only forbids a download"
        )
        raise _missing(missing, f"{where}, and the Hugging Face cache does not either", root)
    return found


def _reachable(model_id: str, local_only: bool) -> bool:
    """A directory, a model in the Hugging Face cache, or one a download may fetch."""
    if (Path(model_id) / "config.json").is_file() or _in_hf_cache(model_id):
        return True
    return not (local_only or _offline())


def _missing(model_ids: list[str], why: str, root: str | Path | None) -> CheckpointError:
    downloads = "; ".join(
        f"`hf download {m} --local-dir DIR/{m.rsplit('/', 1)[-1]}`" for m in model_ids
    )
    return CheckpointError(
        f"the base preset needs {' and '.join(model_ids)} ({why}; config.json, "
        "model.safetensors, tokenizer or preprocessor files). Either let it download them "
        "(a machine that reaches huggingface.co, HF_HUB_OFFLINE unset), or on a machine with "
        f"internet run {downloads}, copy DIR here and pass --pretrained DIR (or set "
        "AIGIS_PRETRAINED_DIR=DIR)",
        str(root) if root else model_ids[0],
    )


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _local_only(path: str, asked: bool) -> bool:
    """``local_files_only`` for ``path``: a directory, or a model id while offline or asked to."""
    return Path(path).is_dir() or asked or _offline()


def _in_hf_cache(model_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model_id, "config.json")
    return isinstance(found, str)

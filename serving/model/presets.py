"""Presets: where a new detector's encoders come from.

- ``tiny``: a small BERT and a small CLIP built from configs, random weights, a generated
  WordPiece vocabulary. Trains in seconds on a CPU; what tests and the demo use.
- ``base-random``: bert-base-uncased and CLIP ViT-B/32 shapes with random weights and a generated
  30,522-entry vocabulary; what performance is measured on.
- ``base``: the real bert-base-uncased and openai/clip-vit-base-patch32, the Hugging Face way:
  ``<pretrained_dir>/bert-base-uncased`` and ``<pretrained_dir>/clip-vit-base-patch32`` (a copy of
  each Hugging Face repository) when a directory is given, else the Hugging Face cache, else a
  download from the hub unless ``HF_HUB_OFFLINE=1``.

All three return the same :class:`~serving.model.checkpoint.Checkpoint` that
:func:`serving.model.checkpoint.load_checkpoint` returns, so everything downstream has one
code path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, cast

from transformers import (
    BertConfig,
    BertModel,
    BertTokenizer,
    CLIPModel,
    CLIPTextConfig,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModel,
    PretrainedConfig,
)
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from schemas.labels import GENERATORS
from schemas.settings import load_settings
from serving.errors import CheckpointError
from serving.model.checkpoint import Checkpoint
from serving.model.config import Architecture, DetectorConfig, PreprocessConfig
from serving.model.detector import (
    ClipContrastiveDetector,
    ClipLinearDetector,
    FusedDetector,
    build_detector,
)
from serving.model.preprocess import make_image_processor
from serving.model.vocab import BERT_BASE_VOCAB_SIZE, generated_tokenizer

PRESETS: Final[tuple[str, ...]] = ("tiny", "base", "base-random")
BERT_ID: Final[str] = "bert-base-uncased"
CLIP_ID: Final[str] = "openai/clip-vit-base-patch32"
CLIP_TEXT_VOCAB_SIZE: Final[int] = 49_408

# Keys of a transformers config dict that describe the saving run or a classification head the
# encoders do not have (id2label's integer keys would not even survive a JSON round trip).
_DROPPED_KEYS: Final[tuple[str, ...]] = (
    "transformers_version",
    "_name_or_path",
    "dtype",
    "architectures",
    "id2label",
    "label2id",
)


def build_preset(
    preset: str,
    architecture: Architecture,
    *,
    generators: tuple[str, ...] = GENERATORS,
    pretrained_dir: str | Path | None = None,
    name: str = "aigis-detector",
    version: str = "0",
) -> Checkpoint:
    """A new detector of ``architecture`` with encoders from ``preset`` and fresh heads.

    ``pretrained_dir`` only matters for ``base``. Raises CheckpointError when ``base`` weights
    are not on this machine, ValueError for an unknown preset.
    """
    common: dict[str, Any] = {
        "name": name,
        "version": version,
        "architecture": architecture,
        "preset": preset,
        "generators": generators,
    }
    if preset == "tiny":
        return _random(_tiny(architecture, common))
    if preset == "base-random":
        return _random(_base_random(architecture, common))
    if preset == "base":
        return _pretrained(architecture, common, pretrained_dir)
    raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")


def config_dict(config: PretrainedConfig) -> dict[str, Any]:
    """A transformers config as the JSON-able dict a DetectorConfig stores."""
    values = config.to_dict()
    for key in _DROPPED_KEYS:
        values.pop(key, None)
    return values


def _random(spec: tuple[DetectorConfig, PreTrainedTokenizerBase]) -> Checkpoint:
    config, tokenizer = spec
    model = build_detector(config, tokenizer)
    return Checkpoint(config, model, tokenizer, make_image_processor(config.preprocess))


def _tiny(
    architecture: Architecture, common: dict[str, Any]
) -> tuple[DetectorConfig, PreTrainedTokenizerBase]:
    preprocess = PreprocessConfig(max_caption_tokens=64)
    tokenizer = generated_tokenizer(None, preprocess.max_caption_tokens)
    vision = CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=preprocess.image_size,
        patch_size=32,
        projection_dim=64,
    )
    text = _text_config(
        architecture,
        tokenizer,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=preprocess.max_caption_tokens,
    )
    config = DetectorConfig(
        **common,
        text_config=text,
        vision_config=config_dict(vision),
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


def _pretrained(
    architecture: Architecture, common: dict[str, Any], pretrained_dir: str | Path | None
) -> Checkpoint:
    preprocess = PreprocessConfig()
    ids = (BERT_ID, CLIP_ID) if architecture == "fused" else (CLIP_ID,)
    paths = _locate(*ids, pretrained_dir=pretrained_dir)
    try:
        if architecture == "fused":
            return _pretrained_fused(common, preprocess, *paths)
        if architecture == "clip-linear":
            return _pretrained_clip_linear(common, preprocess, *paths)
        return _pretrained_contrastive(common, preprocess, *paths)
    except OSError as exc:  # what from_pretrained raises when a download or a file fails
        failed = [i for i, p in zip(ids, paths, strict=True) if not Path(p).is_dir()] or list(ids)
        raise _missing(failed, f"loading failed: {exc}", pretrained_dir) from exc


def _pretrained_fused(
    common: dict[str, Any], preprocess: PreprocessConfig, bert_path: str, clip_path: str
) -> Checkpoint:
    bert = BertModel.from_pretrained(
        bert_path, add_pooling_layer=False, local_files_only=_local_only(bert_path)
    )
    vision = CLIPVisionModel.from_pretrained(clip_path, local_files_only=_local_only(clip_path))
    tokenizer = BertTokenizer.from_pretrained(bert_path, local_files_only=_local_only(bert_path))
    tokenizer.model_max_length = preprocess.max_caption_tokens
    config = DetectorConfig(
        **common,
        sources={"text": BERT_ID, "vision": CLIP_ID},
        text_config=config_dict(bert.config),
        vision_config=config_dict(vision.config),
        preprocess=preprocess,
    )
    model = FusedDetector(config)
    model.text.load_state_dict(bert.state_dict())
    model.vision.load_state_dict(vision.state_dict())
    return Checkpoint(config, model, tokenizer, make_image_processor(preprocess))


def _pretrained_clip_linear(
    common: dict[str, Any], preprocess: PreprocessConfig, clip_path: str
) -> Checkpoint:
    vision = CLIPVisionModel.from_pretrained(clip_path, local_files_only=_local_only(clip_path))
    # clip-linear reads no text; the tokenizer only keeps checkpoints uniform.
    tokenizer = generated_tokenizer(None, preprocess.max_caption_tokens)
    config = DetectorConfig(
        **common,
        sources={"vision": CLIP_ID},
        vision_config=config_dict(vision.config),
        preprocess=preprocess,
    )
    model = ClipLinearDetector(config)
    model.vision.load_state_dict(vision.state_dict())
    return Checkpoint(config, model, tokenizer, make_image_processor(preprocess))


def _pretrained_contrastive(
    common: dict[str, Any], preprocess: PreprocessConfig, clip_path: str
) -> Checkpoint:
    clip = CLIPModel.from_pretrained(clip_path, local_files_only=_local_only(clip_path))
    tokenizer = CLIPTokenizer.from_pretrained(clip_path, local_files_only=_local_only(clip_path))
    config = DetectorConfig(
        **common,
        sources={"text": CLIP_ID, "vision": CLIP_ID},
        text_config=config_dict(cast(PretrainedConfig, clip.config.text_config)),
        vision_config=config_dict(cast(PretrainedConfig, clip.config.vision_config)),
        projection_dim=clip.config.projection_dim,
        preprocess=preprocess,
    )
    model = cast(ClipContrastiveDetector, build_detector(config, tokenizer))
    model.clip.load_state_dict(clip.state_dict())
    model.clip.logit_scale.requires_grad_(False)
    return Checkpoint(config, model, tokenizer, make_image_processor(preprocess))


def _locate(*model_ids: str, pretrained_dir: str | Path | None) -> list[str]:
    """Where to load each of ``model_ids`` from, the Hugging Face way: a directory under
    ``pretrained_dir`` (or ``AIGIS_PRETRAINED_DIR``) when one is given, else the model id itself,
    which ``from_pretrained`` reads from the Hugging Face cache or downloads from the hub. With
    ``HF_HUB_OFFLINE=1`` (or a directory given) nothing is downloaded.

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
        elif not root and (_in_hf_cache(model_id) or not _offline()):
            found.append(model_id)
        else:
            missing.append(model_id)
    if missing:
        where = f"{root} does not hold them" if root else "HF_HUB_OFFLINE=1 forbids a download"
        raise _missing(missing, f"{where}, and the Hugging Face cache does not either", root)
    return found


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


def _local_only(path: str) -> bool:
    """``local_files_only`` for ``path``: a directory, or a model id while offline."""
    return Path(path).is_dir() or _offline()


def _in_hf_cache(model_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model_id, "config.json")
    return isinstance(found, str)

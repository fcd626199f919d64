"""Checkpoint directories: save and load a detector without pickles or a network.

A checkpoint is a directory holding

- ``config.json``: the :class:`~serving.model.config.DetectorConfig`, in the form
  ``AutoConfig`` reads (so ``AutoModel.from_pretrained(directory)`` loads it too, once
  :mod:`serving.model.detector` is imported);
- ``model.safetensors``: the weights;
- ``tokenizer_config.json`` and ``tokenizer.json`` (or ``vocab.txt`` / ``vocab.json``): the
  tokenizer;
- ``preprocessor_config.json``: the image processor;
- ``README.md``: the model card, when training or evaluation wrote one (training.card).

Format 1 checkpoints (written before the detector was a transformers model) load here as they
are; :func:`upgrade_checkpoint` (``aigis model upgrade DIR``) rewrites one as format 2.

Loading reads JSON, text and safetensors only, and refuses tokenizer classes outside a short list
so a crafted ``tokenizer_config.json`` cannot make transformers import arbitrary code.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import torch
import transformers
from safetensors import SafetensorError
from safetensors.torch import load_model
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from serving.errors import CheckpointError
from serving.model.config import CONFIG_FILE, FORMAT_VERSION, DetectorConfig
from serving.model.detector import Detector, build_detector
from serving.model.preprocess import ImageProcessor, Preprocessor

WEIGHTS_FILE: Final[str] = "model.safetensors"
TOKENIZER_CONFIG_FILE: Final[str] = "tokenizer_config.json"
TOKENIZER_FILES: Final[tuple[str, ...]] = ("tokenizer.json", "vocab.txt", "vocab.json")
IMAGE_PROCESSOR_FILE: Final[str] = "preprocessor_config.json"
_TOKENIZER_CLASSES: Final[frozenset[str]] = frozenset(
    {
        "BertTokenizer",
        "BertTokenizerFast",
        "CLIPTokenizer",
        "CLIPTokenizerFast",
        "DistilBertTokenizer",
        "DistilBertTokenizerFast",
        "RobertaTokenizer",
        "RobertaTokenizerFast",
        "XLMRobertaTokenizer",
        "XLMRobertaTokenizerFast",
        "PreTrainedTokenizerFast",
        "TokenizersBackend",
    }
)
# Buffers format 1 rebuilt at load instead of saving: their absence is not a mismatch.
_FORMAT1_UNSAVED: Final[frozenset[str]] = frozenset({"prompt_ids", "prompt_mask"})


@dataclass(frozen=True)
class Checkpoint:
    """A detector in memory with what feeds it and what saving it needs."""

    config: DetectorConfig
    model: Detector
    tokenizer: PreTrainedTokenizerBase
    image_processor: ImageProcessor

    @property
    def preprocessor(self) -> Preprocessor:
        return Preprocessor(self.config, self.tokenizer, self.image_processor)


def save_checkpoint(
    model: Detector,
    tokenizer: PreTrainedTokenizerBase,
    image_processor: ImageProcessor,
    config: DetectorConfig,
    path: str | Path,
) -> Path:
    """Write a checkpoint directory at ``path`` (created if needed); returns the directory.

    ``config`` is written as given, so pass ``model.detector_config`` updated with a new version or
    calibration temperature to record them.
    """
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(directory))
    image_processor.save_pretrained(str(directory))
    # save_pretrained writes config.json before the weights; staged aside, the weights move in
    # first and the config goes last, so its presence marks a complete checkpoint.
    with tempfile.TemporaryDirectory(prefix=".weights-", dir=directory) as staging:
        model.save_pretrained(staging)
        os.replace(Path(staging) / WEIGHTS_FILE, directory / WEIGHTS_FILE)
    config.save(directory)
    return directory


def load_checkpoint(path: str | Path, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Load the checkpoint directory at ``path`` onto ``device``, in eval mode.

    Raises CheckpointError naming the missing or invalid file and how to supply it.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(
            f"checkpoint directory {directory} does not exist; train one with `aigis train "
            "--output DIR` or give the directory a checkpoint was saved to",
            str(directory),
        )
    config = DetectorConfig.load(directory)
    tokenizer = load_tokenizer(directory)
    image_processor = load_image_processor(directory)
    try:
        model = build_detector(config, tokenizer)
    except ValueError as exc:  # an encoder config transformers refuses
        raise CheckpointError(
            f"{directory / CONFIG_FILE} describes a model that cannot be built: {exc}",
            str(directory / CONFIG_FILE),
        ) from None
    _load_weights(model, directory / WEIGHTS_FILE, format_version=_written_format(directory))
    model.to(device).eval()
    return Checkpoint(model.detector_config, model, tokenizer, image_processor)


def upgrade_checkpoint(path: str | Path) -> Path:
    """Rewrite a checkpoint directory in the current format (config.json and weights), in
    place; a current one is rewritten unchanged. Other files (the card) stay."""
    loaded = load_checkpoint(path)
    return save_checkpoint(
        loaded.model, loaded.tokenizer, loaded.image_processor, loaded.config, path
    )


def _written_format(directory: Path) -> int:
    """The format_version config.json was written in (DetectorConfig reads both as current)."""
    values = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    return int(values.get("format_version", FORMAT_VERSION))


def checkpoint_files(directory: str | Path) -> list[Path]:
    """The files of a checkpoint directory that serving needs (for archives), all present."""
    root = Path(directory)
    names = [CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_CONFIG_FILE, IMAGE_PROCESSOR_FILE]
    names += [name for name in TOKENIZER_FILES if (root / name).is_file()]
    names += [
        name
        for name in ("special_tokens_map.json", "merges.txt", "added_tokens.json")
        if (root / name).is_file()
    ]
    for name in names:
        _require(root / name, "")
    return [root / name for name in names]


def load_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved in ``directory``, from JSON and text files only."""
    config_path = directory / TOKENIZER_CONFIG_FILE
    _require(config_path, "the tokenizer's settings")
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise CheckpointError(
            f"{directory} has no tokenizer vocabulary (one of {', '.join(TOKENIZER_FILES)}); "
            "copy the tokenizer files from the directory the model was trained in",
            str(directory / TOKENIZER_FILES[0]),
        )
    try:
        class_name = json.loads(config_path.read_text(encoding="utf-8")).get("tokenizer_class")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise CheckpointError(f"{config_path} is not valid JSON: {exc}", str(config_path)) from None
    if class_name not in _TOKENIZER_CLASSES:
        raise CheckpointError(
            f"{config_path} names tokenizer class {class_name!r}; a detector checkpoint uses one "
            f"of {', '.join(sorted(_TOKENIZER_CLASSES))}",
            str(config_path),
        )
    tokenizer_class = getattr(transformers, class_name)
    try:
        tokenizer: PreTrainedTokenizerBase = tokenizer_class.from_pretrained(
            str(directory), local_files_only=True
        )
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"the tokenizer in {directory} cannot be loaded: {exc}", str(directory)
        ) from None
    return tokenizer


def load_image_processor(directory: Path) -> ImageProcessor:
    """The image processor saved in ``directory`` (a JSON file)."""
    path = directory / IMAGE_PROCESSOR_FILE
    _require(path, "the image pre-processing settings")
    try:
        return ImageProcessor.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} cannot be loaded: {exc}", str(path)) from None


def _load_weights(model: Detector, path: Path, *, format_version: int) -> None:
    _require(path, "the weights")
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path} is not a readable safetensors file for this architecture "
            f"({model.detector_config.architecture}): {exc}",
            str(path),
        ) from None
    if format_version == 1:
        missing = [name for name in missing if name not in _FORMAT1_UNSAVED]
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match config.json ({model.detector_config.architecture}): "
            f"{len(missing)} missing tensors (first: {sorted(missing)[:3]}), "
            f"{len(unexpected)} unexpected (first: {sorted(unexpected)[:3]}); "
            "the weights and the config come from different models",
            str(path),
        )


def _require(path: Path, what: str) -> None:
    if not path.is_file():
        holds = f" ({what})" if what else ""
        raise CheckpointError(
            f"{path} is missing{holds}: a checkpoint directory holds {CONFIG_FILE}, "
            f"{WEIGHTS_FILE}, {TOKENIZER_CONFIG_FILE} with tokenizer.json or a vocabulary, and "
            f"{IMAGE_PROCESSOR_FILE}; copy the whole directory written by `aigis train` or "
            "serving.model.checkpoint.save_checkpoint",
            str(path),
        )

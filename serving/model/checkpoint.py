"""Checkpoint directories: save and load a detector without pickles or a network.

A checkpoint is a directory holding

- ``config.json``: the :class:`~serving.model.config.DetectorConfig`;
- ``model.safetensors``: the weights;
- ``tokenizer_config.json`` and ``tokenizer.json`` (or ``vocab.txt`` / ``vocab.json``): the
  tokenizer;
- ``preprocessor_config.json``: the image processor.

Loading reads JSON, text and safetensors only, and refuses tokenizer classes outside a short list
so a crafted ``tokenizer_config.json`` cannot make transformers import arbitrary code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import torch
import transformers
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from serving.errors import CheckpointError
from serving.model.config import CONFIG_FILE, DetectorConfig
from serving.model.detector import Detector, build_detector
from serving.model.preprocess import ImageProcessor, Preprocessor

WEIGHTS_FILE: Final[str] = "model.safetensors"
TOKENIZER_CONFIG_FILE: Final[str] = "tokenizer_config.json"
TOKENIZER_FILES: Final[tuple[str, ...]] = ("tokenizer.json", "vocab.txt", "vocab.json")
IMAGE_PROCESSOR_FILE: Final[str] = "preprocessor_config.json"
_TOKENIZER_CLASSES: Final[frozenset[str]] = frozenset(
    {"BertTokenizer", "BertTokenizerFast", "CLIPTokenizer", "CLIPTokenizerFast"}
)


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
    # save_model copes with shared tensors and writes contiguous copies of views.
    save_model(model, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    # The config goes last: its presence marks a complete checkpoint.
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
    model = build_detector(config, tokenizer)
    _load_weights(model, directory / WEIGHTS_FILE)
    model.to(device).eval()
    return Checkpoint(config, model, tokenizer, image_processor)


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


def _load_weights(model: Detector, path: Path) -> None:
    _require(path, "the weights")
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path} is not a readable safetensors file for this architecture "
            f"({model.detector_config.architecture}): {exc}",
            str(path),
        ) from None
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

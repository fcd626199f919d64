"""Tiny detectors whose answer is known: every image gets the same p_ai and generator."""

from __future__ import annotations

from pathlib import Path

import torch

from schemas.labels import GENERATORS
from serving.model.checkpoint import save_checkpoint
from serving.model.presets import build_preset


def forced_checkpoint(path: Path, version: str, *, ai: bool, generator: str = "sdxl") -> Path:
    """A tiny detector that gives every image the same answer: human, or AI by ``generator``."""
    built = build_preset("tiny", "fused", name="detector", version=version)
    model = built.model
    with torch.no_grad():
        model.head_a.weight.zero_()  # type: ignore[operator]
        model.head_a.bias.fill_(8.0 if ai else -8.0)  # type: ignore[operator]
        model.head_b.weight.zero_()  # type: ignore[operator]
        model.head_b.bias.zero_()  # type: ignore[operator]
        model.head_b.bias[GENERATORS.index(generator)] = 8.0  # type: ignore[index]
    config = built.config.model_copy(update={"version": version})
    return save_checkpoint(model, built.tokenizer, built.image_processor, config, path)

"""OpenVINO's own int8: the fp32 encoder graphs quantised statically by NNCF.

OpenVINO runs ONNX Runtime's dynamically quantised graph (``MatMulInteger`` with activations
quantised per batch) no faster than fp32; its int8 kernels need the graph it quantises itself.
:func:`quantize_graph` does that with NNCF's post-training quantisation: the fp32 ONNX graph is
read into OpenVINO, run on a calibration set to fix each activation's int8 range, with NNCF's
transformer settings (``ModelType.TRANSFORMER``: SmoothQuant moves the activations' outliers into
the weights, attention's softmax and layer norms stay in floating point), and saved as an
OpenVINO IR (``.xml`` and ``.bin``) beside nothing else.

The calibration set is a few batches of the model's own inputs. :func:`calibration_batches`
makes them from images and captions (the benchmark's: the smoke set); without any,
:func:`synthetic_batches` makes random pixels and random captions of varied length, which fixes
ranges less tightly than real inputs would (docs/serving.md#precision-and-backends).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
import torch
from PIL import Image

from serving.model.preprocess import Preprocessor

__all__ = [
    "CALIBRATION_ITEMS",
    "Batch",
    "calibration_batches",
    "quantize_graph",
    "synthetic_batches",
]

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""One calibration batch: pixel values, caption ids, caption attention mask."""

CALIBRATION_ITEMS: Final[int] = 128
"""Items in the synthetic calibration set (NNCF's documentation suggests about 300 real ones;
the benchmark uses the smoke set's)."""
_BATCH: Final[int] = 16


def calibration_batches(
    preprocessor: Preprocessor,
    images: Sequence[Image.Image],
    captions: Sequence[str | None],
    batch: int = _BATCH,
) -> list[Batch]:
    """``images`` and their ``captions`` as the encoders' inputs, in batches of ``batch``."""
    batches: list[Batch] = []
    for start in range(0, len(images), batch):
        pixels = preprocessor.pixel_values(images[start : start + batch])
        encoded = preprocessor.captions(list(captions[start : start + batch]))
        batches.append((pixels, encoded["input_ids"], encoded["attention_mask"]))
    return batches


def synthetic_batches(
    image_size: int, vocabulary: int, items: int = CALIBRATION_ITEMS, batch: int = _BATCH
) -> list[Batch]:
    """Random normalised pixels and random captions of 4 to 40 tokens (seeded: the same
    archive every time)."""
    generator = torch.Generator().manual_seed(0)
    batches: list[Batch] = []
    for start in range(0, items, batch):
        size = min(batch, items - start)
        pixels = torch.randn(size, 3, image_size, image_size, generator=generator)
        length = int(torch.randint(4, 41, (1,), generator=generator))
        ids = torch.randint(5, max(6, vocabulary), (size, length), generator=generator)
        mask = torch.ones_like(ids)
        for row in range(size):  # shorter captions padded to the batch's longest
            mask[row, int(torch.randint(2, length + 1, (1,), generator=generator)) :] = 0
        batches.append((pixels, ids, mask))
    return batches


def quantize_graph(source: Path, target: Path, feeds: Sequence[dict[str, np.ndarray]]) -> None:
    """The fp32 ONNX graph ``source`` quantised to int8 by NNCF on ``feeds`` (the graph's inputs
    by name, one dict per batch), written as the OpenVINO IR ``target`` (``.xml``, with its
    ``.bin`` beside it)."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(source))
    # NNCF reports progress bars on stdout and its choices at INFO; neither is actionable.
    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        quantized = nncf.quantize(
            model,
            nncf.Dataset(list(feeds)),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(feeds),  # counted in batches, as given
        )
    ov.save_model(quantized, str(target), compress_to_fp16=False)

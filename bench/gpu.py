"""The handler's code path on a GPU, in process: JPEG bytes to scores for the base fused model.

    bench/gpu.sh [--device auto|cuda|cpu] [--quick] [--batch 256] [--json PATH]

(``bench/gpu.sh`` prepares the interpreter's path, then runs ``python -m bench.gpu``.) The model
is ``base-random`` built from its config (CLIP ViT-B/32 and BERT-base shapes, random weights, no
download), loaded as the TorchServe handler loads an archive's checkpoint (``Predictor``,
precision ``auto``: fp16 on a GPU). Items go through the handler's own steps
(:meth:`~serving.torchserve.handler.DetectorHandler.batch` and ``predict``) with the reader it
picks for the device (:func:`~serving.torchserve.handler.image_reader`): on a GPU, every header
checked on the CPU, JPEGs decoded and cropped on the device, other formats read by the CPU
reader (:mod:`serving.torchserve.device_decoding`); then the caption feature cache, the image
encoder, the fused heads and the calibrated predictions.

Measured on a corpus of JPEGs alone (the goal: 5,000 items/s from JPEG bytes) and on one where
one item in 32 is a PNG (the CPU reader's share), at the handler's budget for JPEGs decoded on
the device in one call (``device_decoded_mb``) and at a quarter of it; then where one JPEG
batch's time goes, the device synchronised between the steps.
``--json`` writes the figures after each measurement (for ``aigis bench --gpu``), so a run
stopped early still leaves what it measured. ``--device cpu --quick`` runs it without a GPU.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from serving.imageio import probe_image
from serving.model.checkpoint import Checkpoint
from serving.model.predictor import Predictor
from serving.torchserve.handler import DetectorHandler, HandlerSettings, image_reader
from serving.torchserve.items import Item

GOAL_ITEMS_PER_S = 5000.0
_CORPORA = (("jpeg", 0), ("one_png_in_32", 32))


def pick_device(requested: str) -> torch.device:
    """``auto``: cuda when one is usable, else cpu. Asking for cuda without one is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch sees no usable GPU here; use --device cpu")
    return device


def handler_on(
    checkpoint: Checkpoint, device: torch.device, precision: str, batch: int, compiled: bool
) -> DetectorHandler:
    """A handler as ``initialize`` leaves it for an archive of ``checkpoint`` on ``device``."""
    predictor = Predictor.from_loaded(
        checkpoint, device=device, precision=precision, max_batch=batch, compile=compiled
    )
    handler = DetectorHandler()
    handler.settings = HandlerSettings(max_forward_batch=batch, precision=precision)
    handler.predictor = predictor
    handler.reader = image_reader(predictor, torch.get_num_threads())
    return handler


def scores(handler: DetectorHandler, data: Sequence[bytes], captions: Sequence[str]) -> list[Any]:
    """Calibrated p_ai per item through the handler's steps; None for an item it refused."""
    items = [Item(caption=c, data=d) for d, c in zip(data, captions, strict=True)]
    for chunk in handler.batch(items):
        handler.predict(chunk)
    return [None if item.result is None else item.result.p_ai for item in items]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _arguments(argv)
    device = pick_device(args.device)
    precision = args.precision or ("fp16" if device.type == "cuda" else "fp32")
    started = time.monotonic()
    from serving.model.presets import build_preset

    preset = "tiny" if args.tiny else "base-random"
    handler = handler_on(build_preset(preset, "fused"), device, precision, args.batch, args.compile)
    built_s = time.monotonic() - started
    batch = args.batch
    corpora = {name: _batch(_corpus(png_every=every), batch) for name, every in _CORPORA}
    items, texts = corpora["jpeg"]
    reader = type(handler.reader).__name__
    print(
        f"# {preset} fused on {_device_name(device)}, {precision}, compiled {args.compile}, "
        f"batch {batch}, {reader}; model built in {built_s:.0f} s",
        flush=True,
    )
    started = time.monotonic()
    for _ in range(2):  # warm-up: kernels, allocator, caption cache
        scores(handler, items, texts)
    warm_s = time.monotonic() - started
    rounds = 2 if args.quick else args.rounds
    result: dict[str, Any] = {
        "device": _device_name(device),
        "preset": preset,
        "precision": precision,
        "compiled": args.compile,
        "reader": reader,
        "batch": batch,
        "rounds": rounds,
        "warm_up_s": warm_s,
        "goal_items_per_s": GOAL_ITEMS_PER_S,
    }
    default_mb = handler.settings.device_decoded_mb
    for budget in (default_mb // 4, default_mb):
        handler.settings = replace(handler.settings, device_decoded_mb=budget)
        for name, (corpus_items, corpus_texts) in corpora.items():
            key = f"{name}_{budget}mb"
            result[key] = _timed(handler, corpus_items, corpus_texts, rounds, device)
            print(f"{key}: {result[key]['items_per_s']:.0f} items/s", flush=True)
            _write(args.json, result)
    handler.settings = replace(handler.settings, device_decoded_mb=default_mb)
    result["items_per_s"] = result[f"jpeg_{default_mb}mb"]["items_per_s"]
    result["refused"] = sum(f["refused"] for f in result.values() if isinstance(f, dict))
    result["steps_ms"] = _steps(handler, items, texts, device)
    steps = ", ".join(f"{step} {ms:.1f}" for step, ms in result["steps_ms"].items())
    print(f"one JPEG batch, the device synchronised between steps (ms): {steps}")
    verdict = "met" if result["items_per_s"] >= GOAL_ITEMS_PER_S else "not met"
    print(
        f"JPEG bytes to scores: {result['items_per_s']:.0f} items/s "
        f"(goal {GOAL_ITEMS_PER_S:.0f}: {verdict}); warm-up {warm_s:.0f} s",
        flush=True,
    )
    _write(args.json, result)
    return result


def _timed(
    handler: DetectorHandler,
    items: list[bytes],
    texts: list[str],
    rounds: int,
    device: torch.device,
) -> dict[str, Any]:
    refused = 0
    _sync(device)
    begun = time.perf_counter()
    for _ in range(rounds):
        refused += sum(p is None for p in scores(handler, items, texts))
    _sync(device)
    return {"items_per_s": rounds * len(items) / (time.perf_counter() - begun), "refused": refused}


def _steps(
    handler: DetectorHandler, items: list[bytes], texts: list[str], device: torch.device
) -> dict[str, float]:
    """Milliseconds of each step of one batch, the device synchronised after each."""
    marks: dict[str, float] = {}

    def mark(step: str, begun: float) -> float:
        _sync(device)
        now = time.perf_counter()
        marks[step] = 1000 * (now - begun)
        return now

    begun = time.perf_counter()
    for data in items:
        probe_image(data)
    begun = mark("header checks", begun)
    reader, predictor = handler.reader, handler.predictor
    if reader is None or predictor is None:
        raise RuntimeError("a handler from handler_on has its reader and predictor")
    batch = [Item(caption=c, data=d) for d, c in zip(items, texts, strict=True)]
    crops = [d.image for d in reader.ahead(batch, handler.settings)]
    begun = mark("header checks again, decode and crop", begun)
    predictor.predict(crops, texts)
    mark("pixels, encoders (captions cached), heads, predictions", begun)
    return marks


def _batch(corpus: tuple[list[bytes], list[str]], size: int) -> tuple[list[bytes], list[str]]:
    images, captions = corpus
    return [images[i % len(images)] for i in range(size)], [
        captions[i % len(captions)] for i in range(size)
    ]


def _corpus(png_every: int = 32) -> tuple[list[bytes], list[str]]:
    """Photo-like JPEGs of a few sizes with captions; with ``png_every``, one item in that many
    is a PNG (the CPU reader's share).

    Made here rather than read from the smoke set, so that the GPU machine needs no data set.
    """
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = [(256, 256), (640, 480), (480, 640), (1024, 768)]
    images, captions = [], []
    for index in range(64):
        width, height = sizes[index % len(sizes)]
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        blown = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
        field = np.asarray(blown)
        grain = rng.integers(-10, 11, field.shape)
        picture = Image.fromarray(np.clip(field + grain, 0, 255).astype(np.uint8))
        png = png_every > 0 and index % png_every == png_every - 1
        fmt = "PNG" if png else "JPEG"
        with io.BytesIO() as buffer:
            picture.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
            images.append(buffer.getvalue())
        captions.append("" if index % 3 == 0 else f"a photo, caption {index % 8}")
    return images, captions


def _write(path: Path | None, result: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--device", default="auto", help="auto (cuda when usable), cuda or cpu")
    parser.add_argument(
        "--precision", choices=("fp32", "fp16", "bf16"), help="default fp16 on cuda, as auto"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="the encoders through torch.compile, as the archive's compile setting",
    )
    parser.add_argument(
        "--batch", type=int, default=256, help="items per forward pass (default 256)"
    )
    parser.add_argument("--rounds", type=int, default=20, help="timed batches (default 20)")
    parser.add_argument("--quick", action="store_true", help="2 timed batches")
    parser.add_argument("--tiny", action="store_true", help="the tiny preset instead of base")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()

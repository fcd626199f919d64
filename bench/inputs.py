"""Input pipeline benchmark: encoded image bytes to the model's pixel tensor, per core.

    .venv/bin/python -m bench.inputs [--quick] [--trained DIR] [--json PATH]

(as a module from the repository root). One thread, one torch thread, so items/s is per core.
Each row runs the same images through one pipeline, all rows in one run, rounds interleaved and
the median kept (compare ratios):

* ``reference``: full-size decode, then transformers' CLIP image processor (what training and
  serving did before the model server reduced images while decoding);
* ``processor``: the model server's reduced decode (``target_side``), then CLIP's processor;
* ``pipeline``: the reduced decode, then :class:`serving.model.pixels.PixelPipeline` (what the
  model server and training run now);
* ``pipeline, 2 threads``: the same with a decode thread per core (Pillow's decoder and torch's
  resize release the GIL), items/s of both cores together;
* ``training``: decode, augment and pre-process of the smoke training split (the trainer's
  collator), the row earlier results called the input pipeline.

Two image sets: the smoke set's test split (256 x 256 JPEGs) and synthetic 1600 x 1200 photos
(JPEG, and PNG, which no decoder can reduce while decoding). Beside the speeds: how far the
pipeline's pixels are from the reference's (largest difference in 8-bit grey levels), and how
many decisions of a tiny model agree on the smoke test split (the ``--trained`` checkpoint, else
a random one).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from serving.imageio import decode_image
from serving.model.config import PreprocessConfig
from serving.model.pixels import PixelPipeline
from serving.model.predictor import Predictor
from serving.model.preprocess import make_image_processor

BATCH = 32
CONFIG = PreprocessConfig()


@dataclass(frozen=True)
class Row:
    images: str
    pipeline: str
    items_per_s: float


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    torch.set_num_threads(1)
    sets = {"smoke 256px JPEG": _smoke()}
    for fmt in ("JPEG", "PNG"):
        sets[f"1600x1200 {fmt}"] = _photos(fmt, 16 if args.quick else 48)
    print(f"# input pipeline benchmark: 1 thread, load average {os.getloadavg()[0]:.1f}\n")
    rows: list[Row] = []
    pipelines = _pipelines()
    for name, images in sets.items():
        # Rounds interleave the pipelines, and each figure is the median of its rounds, so that
        # the load of a shared machine drifting during the run shifts every pipeline alike.
        rounds: dict[str, list[float]] = {pipeline: [] for pipeline in pipelines}
        for _ in range(3 if args.quick else 5):
            for pipeline, run in pipelines.items():
                rounds[pipeline].append(_items_per_s(run, images))
        for pipeline, speeds in rounds.items():
            rows.append(Row(name, pipeline, statistics.median(speeds)))
            print(f"  {name:<18} {pipeline:<20} {rows[-1].items_per_s:8.1f} items/s", flush=True)
    rows.append(Row("smoke train split", "training", _training(128 if args.quick else 512)))
    print(f"  {'smoke train split':<18} {'training':<20} {rows[-1].items_per_s:8.1f} items/s")
    accuracy = _accuracy(sets["smoke 256px JPEG"], args.trained)
    print(json.dumps(accuracy, indent=2))
    if args.json:
        report: dict[str, Any] = {
            "load_average": os.getloadavg(),
            "rows": [asdict(row) for row in rows],
            "accuracy": accuracy,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _pipelines() -> dict[str, Callable[[list[bytes]], torch.Tensor]]:
    side = CONFIG.decode_side
    processor = make_image_processor(CONFIG)
    pixels = PixelPipeline(CONFIG)
    pool = ThreadPoolExecutor(2)

    def reference(batch: list[bytes]) -> torch.Tensor:
        images = [decode_image(data) for data in batch]
        return processor(images=images, return_tensors="pt")["pixel_values"]  # type: ignore[no-any-return]

    def with_processor(batch: list[bytes]) -> torch.Tensor:
        images = [decode_image(data, target_side=side) for data in batch]
        return processor(images=images, return_tensors="pt")["pixel_values"]  # type: ignore[no-any-return]

    def pipeline(batch: list[bytes]) -> torch.Tensor:
        return pixels([decode_image(data, target_side=side) for data in batch])

    def threaded(batch: list[bytes]) -> torch.Tensor:
        out = torch.empty((len(batch), 3, pixels.side, pixels.side))
        crops = pool.map(lambda data: pixels.crop(decode_image(data, target_side=side)), batch)
        for index, crop in enumerate(crops):
            out[index].copy_(crop)
        return out

    return {
        "reference": reference,
        "processor": with_processor,
        "pipeline": pipeline,
        "pipeline, 2 threads": threaded,
    }


def _items_per_s(run: Callable[[list[bytes]], object], images: list[bytes]) -> float:
    """Items/s of one pass over ``images`` after a warm-up batch."""
    run(images[:BATCH])
    started = time.perf_counter()
    for start in range(0, len(images), BATCH):
        run(images[start : start + BATCH])
    return len(images) / (time.perf_counter() - started)


def _training(count: int) -> float:
    from serving.model.presets import build_preset
    from training.collate import DetectorCollator, SampleDataset
    from training.data import load_split

    dataset = SampleDataset(load_split("smoke", "train"), augment=True)
    collate = DetectorCollator(build_preset("tiny", "fused").preprocessor)
    collate([dataset[i] for i in range(BATCH)])  # warm-up: opens the data set's files
    started = time.perf_counter()
    for start in range(0, count, BATCH):
        collate([dataset[i % len(dataset)] for i in range(start, start + BATCH)])
    return count / (time.perf_counter() - started)


def _accuracy(smoke: list[bytes], trained: Path | None) -> dict[str, Any]:
    """The pipeline against the reference: pixel differences and a tiny model's decisions."""
    side = CONFIG.decode_side
    processor = make_image_processor(CONFIG)
    full = [decode_image(data) for data in smoke]
    served = [decode_image(data, target_side=side) for data in smoke]
    want = processor(images=full, return_tensors="pt")["pixel_values"]
    off = (PixelPipeline(CONFIG)(served) - want).abs()
    level = 1 / (255 * min(CONFIG.image_std))
    if trained is None:
        from serving.model.presets import build_preset

        predictor = Predictor(
            build_preset("tiny", "fused"),
            device=torch.device("cpu"),
            dtype=torch.float32,
            max_batch=BATCH,
        )
    else:
        predictor = Predictor.from_checkpoint(trained, device="cpu", precision="fp32")
    captions = [""] * len(smoke)
    ours = predictor.predict(served, captions)
    predictor._preprocess.pixels = None  # the same model on the reference processor
    theirs = predictor.predict(full, captions)
    return {
        "items": len(smoke),
        "model": "trained tiny" if trained else "random tiny",
        "max_levels_off": float(off.max()) / level,
        "values_off_fraction": float((off > 1e-4).float().mean()),
        "decision_agreement": float(
            np.mean([a.decision == b.decision for a, b in zip(ours, theirs, strict=True)])
        ),
        "max_p_ai_change": max(abs(a.p_ai - b.p_ai) for a, b in zip(ours, theirs, strict=True)),
    }


def _smoke() -> list[bytes]:
    from training.data import load_split

    return [sample.image for sample in load_split("smoke", "test", normalise=False)]


def _photos(fmt: str, count: int) -> list[bytes]:
    """``count`` photo-sized pictures: smooth colour fields with grain, as a camera writes."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        coarse = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((1600, 1200), Image.Resampling.BICUBIC))
        grain = rng.integers(-12, 13, field.shape)
        picture = Image.fromarray(np.clip(field + grain, 0, 255).astype(np.uint8))
        buffer = io.BytesIO()
        picture.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        out.append(buffer.getvalue())
    return out


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and rounds")
    parser.add_argument("--trained", type=Path, help="a trained tiny checkpoint for decisions")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()

"""Model benchmark: training and inference throughput of the detector on this CPU, printed.

    .venv/bin/python -m bench.model [--threads 2] [--quick] [--json PATH]

(as a module from the repository root, so that ``bench/`` does not shadow the ``serving``
package). What it measures, all in one process with ``--threads`` intra-op threads:

1. Inference, model only, batch 32, captions of exactly 32 tokens: items/s of each architecture
   for ``tiny`` and ``base-random`` in fp32, and of ``fused`` in bf16 weights and dynamic int8.
2. Training, model only: samples/s of forward + backward + AdamW step on random inputs.
3. Training input pipeline on the ``smoke`` set: decode + augment + pre-process, items/s (what
   bounds the ``tiny`` preset, whose model step is cheap).

Numbers are medians of a few timed repetitions after one warm-up. The machine drifts between
runs (and other work on it slows everything): compare rows of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from serving.model.checkpoint import Checkpoint
from serving.model.predictor import with_precision
from serving.model.presets import build_preset

BATCH = 32
TOKENS = 32


@dataclass(frozen=True)
class Row:
    preset: str
    architecture: str
    phase: str
    """``inference``, ``training`` or ``input pipeline``."""
    precision: str
    batch: int
    items_per_s: float


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    torch.set_num_threads(args.threads)
    repeats = 2 if args.quick else 4
    rows: list[Row] = []
    print(
        f"# model benchmark: {platform.processor() or platform.machine()}, "
        f"{args.threads} threads, torch {torch.__version__}\n"
    )
    for preset in ("tiny", "base-random"):
        for architecture in ("fused", "clip-linear", "clip-contrastive"):
            built = build_preset(preset, architecture)
            precisions = ("fp32", "bf16", "int8") if architecture == "fused" else ("fp32",)
            for precision in precisions:
                rows.append(_inference(built, precision, repeats))
                _print(rows[-1])
            train_batch = BATCH if preset == "tiny" else 8
            rows.append(_training(build_preset(preset, architecture), train_batch, repeats))
            _print(rows[-1])
    rows.append(_input_pipeline(build_preset("tiny", "fused"), 256 if args.quick else 512))
    _print(rows[-1])
    _print_table(rows)
    if args.json:
        report: dict[str, Any] = {
            "threads": args.threads,
            "torch": torch.__version__,
            "rows": [asdict(row) for row in rows],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _inputs(built: Checkpoint, batch: int) -> dict[str, torch.Tensor]:
    """Random pixels and captions of exactly TOKENS tokens ([CLS] ... [SEP])."""
    size = built.config.preprocess.image_size
    inputs = {"pixel_values": torch.randn(batch, 3, size, size)}
    if built.config.reads_caption:
        tokenizer = built.tokenizer
        # The upper half of either generated vocabulary holds ordinary tokens only.
        ids = torch.randint(len(tokenizer) // 2, len(tokenizer), (batch, TOKENS))
        ids[:, 0], ids[:, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id
        inputs["input_ids"] = ids
        inputs["attention_mask"] = torch.ones_like(ids)
    return inputs


def _timed(step: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``step`` over ``repeats`` runs after one warm-up run."""
    step()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _inference(built: Checkpoint, precision: str, repeats: int) -> Row:
    # with_precision converts in place (bf16); each precision starts from the fp32 weights.
    model, dtype = with_precision(copy.deepcopy(built.model).eval(), precision, torch.device("cpu"))
    inputs = {
        key: value.to(dtype) if value.is_floating_point() else value
        for key, value in _inputs(built, BATCH).items()
    }

    def step() -> None:
        with torch.inference_mode():
            model(**inputs)

    seconds = _timed(step, repeats)
    config = built.config
    return Row(config.preset, config.architecture, "inference", precision, BATCH, BATCH / seconds)


def _training(built: Checkpoint, batch: int, repeats: int) -> Row:
    model = built.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    inputs = _inputs(built, batch)
    labels_a = torch.arange(batch) % 2
    labels_b = torch.where(labels_a == 1, 1 + torch.arange(batch) % 5, 0)

    def step() -> None:
        optimizer.zero_grad()
        out = model(**inputs, labels_a=labels_a, labels_b=labels_b)
        out.loss.backward()
        optimizer.step()

    seconds = _timed(step, repeats)
    config = built.config
    return Row(config.preset, config.architecture, "training", "fp32", batch, batch / seconds)


def _input_pipeline(built: Checkpoint, count: int) -> Row:
    from training.collate import DetectorCollator, SampleDataset
    from training.data import load_split

    samples = load_split("smoke", "train")
    dataset = SampleDataset(samples, augment=True)
    collate = DetectorCollator(built.preprocessor)
    collate([dataset[i] for i in range(BATCH)])  # warm-up: opens the data set's files
    started = time.perf_counter()
    for start in range(0, count, BATCH):
        collate([dataset[i % len(dataset)] for i in range(start, start + BATCH)])
    seconds = time.perf_counter() - started
    return Row("tiny", "fused", "input pipeline", "-", BATCH, count / seconds)


def _print(row: Row) -> None:
    print(
        f"  {row.preset:<12} {row.architecture:<17} {row.phase:<15} {row.precision:<5} "
        f"batch {row.batch:>3}: {row.items_per_s:8.1f} items/s",
        flush=True,
    )


def _print_table(rows: list[Row]) -> None:
    print("\n| preset | architecture | phase | precision | batch | items/s |")
    print("| --- | --- | --- | --- | ---: | ---: |")
    for row in rows:
        print(
            f"| {row.preset} | {row.architecture} | {row.phase} | {row.precision} | "
            f"{row.batch} | {row.items_per_s:.1f} |"
        )


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()

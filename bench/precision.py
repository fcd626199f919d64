"""Precision benchmark: each CPU backend of the base fused model, validated on a trained model and
timed, printed as tables.

    .venv/bin/python -m bench.precision [--items 200] [--rounds 5] [--serve] [--seconds 20]
                                        [--json PATH]

(as a module from the repository root, so that ``bench/`` does not shadow the ``serving``
package). What it does, with one intra-op thread per core of this process:

1. The model: ``base-random`` (BERT-base + CLIP ViT-B/32 shapes) trained for a short schedule on
   the smoke set, built once and kept under ``<cache_dir>/bench/base-random-smoke`` (with its
   exported encoders beside it), so later runs start at once.
2. Validation: torch fp32 and each reduced precision score the first ``--items`` items of the
   smoke test split; the table says, for items whose fp32 p_ai (spread over the bands: see
   :class:`Spread`) lies within 0.1 of a band edge,
   how many decisions equal fp32's and how far p_ai moved (serving.model.agreement: pass at
   99.5 % agreement and a change of at most 0.05), and the agreement on all items.
3. Speed in process, model only: batch 32, captions of exactly 32 tokens, both encoders run;
   items/s of each backend (median of ``--rounds`` passes taken in turn, one of each backend per
   round, so a shared machine's changing load falls on all alike) and its ratio to torch fp32
   (the anchor: absolute figures drift between runs).
4. With ``--serve``: TorchServe (the ``AIGIS_SERVING__*`` ports, ``<state_dir>/bench-precision``)
   with archives of torch fp32 and of the fastest passing precision, requests of 8 JPEG items
   with 4 in flight, beside the same archive's code path in process from the same JPEG bytes
   (decode, pre-process, model) at the same forward batch: TorchServe's cost is the difference.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.machine import describe_machine, print_machine
from schemas.settings import Settings
from serving.model.agreement import MAX_P_AI_CHANGE, MIN_AGREEMENT, Agreement, compare
from serving.model.predictor import Predictor

BATCH = 32
TOKENS = 32
CANDIDATES: tuple[tuple[str, str], ...] = (
    ("torch", "fp32"),
    ("torch", "bf16"),
    ("torch", "int8"),
    ("onnxruntime", "int8"),
    ("openvino", "int8"),
    ("openvino", "bf16"),
)
"""(backend, precision) in the order measured; the first is the reference."""


@dataclass(frozen=True)
class Row:
    backend: str
    precision: str
    items_per_s: float
    ratio: float
    """items/s over torch fp32's in the same run."""
    agreement: Agreement | None


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    settings = Settings()
    report: dict[str, Any] = {"machine": describe_machine()}
    print_machine(report["machine"])
    checkpoint = trained_checkpoint(settings.cache_dir / "bench")
    images, captions = _test_items(args.items)
    predictors = [_load(checkpoint, backend, precision) for backend, precision in CANDIDATES]
    logits = [predictor.scores(images, captions).logits_a for predictor in predictors]
    spread = Spread.of(logits[0])
    calibrated = _p_ai(logits[0], predictors[0].config.temperature)
    print(f"  fp32 p_ai as calibrated: {np.percentile(calibrated, [0, 50, 100])}")
    print(f"  validated as: {spread}", flush=True)
    speeds = _interleaved_speeds(predictors, args.rounds)
    rows: list[Row] = []
    for (backend, precision), scores, speed in zip(CANDIDATES, logits, speeds, strict=True):
        agreement = None
        if rows:
            agreement = compare(spread.p_ai(logits[0]), spread.p_ai(scores), predictors[0].config)
        rows.append(Row(backend, precision, speed, speed / speeds[0], agreement))
        _print_row(rows[-1])
    del predictors
    _print_table(rows)
    chosen = fastest_passing(rows)
    print(f"\nfastest passing: {chosen.backend} {chosen.precision}")
    report["rows"] = [asdict(row) for row in rows]
    report["chosen"] = [chosen.backend, chosen.precision]
    if args.serve:
        report["serving"] = serve(settings, checkpoint, chosen, args.seconds)
    report["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    print(f"\nload average at end: {report['load_average_at_end']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Spread:
    """p_ai = sigmoid((logit - centre) / temperature), spreading fp32's scores over the bands.

    A model trained for minutes on the smoke set is barely better than chance: its calibrated
    p_ai all sit near 0.5, where no decision can change, so agreement there shows nothing. The
    validation therefore reads the logits through this spread: fp32's 10th percentile maps to
    p_ai 0.1 and its 90th to 0.9, putting many items near both band edges. A smaller
    temperature than the model's magnifies each precision's logit error: the check is stricter
    than on the calibrated scores.
    """

    centre: float
    temperature: float

    @classmethod
    def of(cls, logits: np.ndarray) -> Spread:
        low, centre, high = np.percentile(logits, [10, 50, 90])
        return cls(float(centre), max(float(high - low) / (2 * np.log(9)), 1e-6))

    def p_ai(self, logits: np.ndarray) -> np.ndarray:
        return _p_ai(logits - self.centre, self.temperature)


def _p_ai(logits: np.ndarray, temperature: float) -> np.ndarray:
    return np.asarray(1 / (1 + np.exp(-np.asarray(logits, dtype=np.float64) / temperature)))


def trained_checkpoint(cache: Path) -> Path:
    """``base-random`` trained briefly on the smoke set: from the cache, else trained now."""
    target = cache / "base-random-smoke"
    if (target / "config.json").is_file():
        return target
    from training.trainer import TrainRequest, train

    partial = cache / "base-random-smoke.partial"
    shutil.rmtree(partial, ignore_errors=True)
    print(f"training base-random on the smoke set once, into {target} (minutes)", flush=True)
    train(
        TrainRequest(
            data="smoke",
            output=partial,
            preset="base-random",
            max_steps=6,
            batch_size=4,
            learning_rate=3e-4,
            name="base-random-smoke",
            version="1",
            augment=False,
            progress=False,
        )
    )
    partial.replace(target)
    return target


def fastest_passing(rows: list[Row]) -> Row:
    """The fastest row whose agreement passes; torch fp32 when none does."""
    passing = [row for row in rows if row.agreement is None or row.agreement.passes]
    return max(passing, key=lambda row: row.items_per_s)


def _load(checkpoint: Path, backend: str, precision: str) -> Predictor:
    graph = "int8" if precision == "int8" else "fp32"
    encoders = checkpoint.parent / f"{checkpoint.name}-encoders-{graph}"
    return Predictor.from_checkpoint(
        checkpoint,
        device="cpu",
        backend=backend,
        precision=precision,
        encoders=encoders if backend != "torch" else None,
        max_batch=BATCH,
    )


def _test_items(count: int) -> tuple[list[Any], list[str | None]]:
    from serving.imageio import decode_image
    from training.data import load_split

    samples = list(load_split("smoke", "test", normalise=False))[:count]
    return [decode_image(s.image) for s in samples], [s.caption for s in samples]


def _interleaved_speeds(predictors: list[Predictor], rounds: int) -> list[float]:
    """Items/s of each model alone at batch 32 with 32-token captions: the median of ``rounds``
    passes each, taken in turn (one pass of each per round, after one warm-up pass), so that
    the load of a shared machine falls on all of them alike."""
    first = predictors[0]
    size = first.config.preprocess.image_size
    tokenizer = first.checkpoint.tokenizer
    pixels = torch.randn(BATCH, 3, size, size)
    ids = torch.randint(len(tokenizer) // 2, len(tokenizer), (BATCH, TOKENS))
    ids[:, 0], ids[:, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id
    mask = torch.ones_like(ids)
    times: list[list[float]] = [[] for _ in predictors]
    for round_ in range(rounds + 1):
        for predictor, measured in zip(predictors, times, strict=True):
            started = time.perf_counter()
            predictor.forward(pixels, ids, mask)
            if round_:
                measured.append(time.perf_counter() - started)
    return [BATCH / float(np.median(measured)) for measured in times]


def _rate(step: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``step`` over at least ``seconds`` (two calls at least), after one
    warm-up call."""
    step()
    done, started = 0, time.perf_counter()
    while done < 2 or time.perf_counter() - started < seconds:
        step()
        done += 1
    return done / (time.perf_counter() - started)


def serve(settings: Settings, checkpoint: Path, chosen: Row, seconds: float) -> dict[str, Any]:
    """TorchServe against the same code in process, from JPEG bytes, for fp32 and ``chosen``."""
    from bench.serving import PATTERNS, serve_sweep, workload
    from serving.imageio import decode_image
    from serving.torchserve.archive import ExportOptions

    settings = settings.model_copy(update={"state_dir": settings.state_dir / "bench-precision"})
    items, _ = workload()
    options = [ExportOptions(backend="torch", precision="fp32")]
    if (chosen.backend, chosen.precision) != ("torch", "fp32"):
        options.append(ExportOptions(backend=chosen.backend, precision=chosen.precision))
    store = settings.state_dir / "store"
    shutil.rmtree(store, ignore_errors=True)
    points = serve_sweep(
        settings, "base-random", checkpoint, store, options, items, seconds, (PATTERNS[2],)
    )
    results: dict[str, Any] = {}
    for option, point in zip(options, points, strict=True):
        predictor = _load(checkpoint, option.backend, option.precision)
        chunk = items[:BATCH]

        def pass_from_bytes(predictor: Predictor = predictor, chunk: list[Any] = chunk) -> None:
            side = predictor.config.preprocess.decode_side
            images = [decode_image(data, target_side=side) for data, _ in chunk]
            predictor.predict(images, [caption for _, caption in chunk])

        in_process = BATCH * _rate(pass_from_bytes, seconds)
        label = f"{option.backend} {option.precision}"
        results[label] = {
            "served_items_per_s": point.items_per_s,
            "in_process_items_per_s": in_process,
            "torchserve_cost": 1 - point.items_per_s / in_process,
            "p50_ms": point.p50_ms,
            "mean_server_batch": point.mean_server_batch,
        }
        print(
            f"  {label:<18} TorchServe {point.items_per_s:6.1f} items/s, in process from JPEG "
            f"{in_process:6.1f} items/s: TorchServe costs {results[label]['torchserve_cost']:.0%}",
            flush=True,
        )
    return results


def _print_row(row: Row) -> None:
    agreement = row.agreement
    verdict = "reference" if agreement is None else ("passes" if agreement.passes else "fails")
    print(
        f"  {row.backend:<12} {row.precision:<5} {row.items_per_s:7.1f} items/s "
        f"({row.ratio:.2f}x fp32), {verdict}",
        flush=True,
    )


def _print_table(rows: list[Row]) -> None:
    print(
        f"\n## validation (near edge: fp32 p_ai within 0.1 of a threshold; pass: >= "
        f"{MIN_AGREEMENT:.1%} agreement, max change <= {MAX_P_AI_CHANGE})\n"
    )
    print(
        "| backend | precision | items/s (batch 32, 32 tokens) | x fp32 | near-edge items | "
        "decisions = fp32 (near edge) | decisions = fp32 (all) | max p_ai change | "
        "mean change | passes |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        a = row.agreement
        if a is None:
            cells = "- | - | - | - | - | reference"
        else:
            cells = (
                f"{a.near} | {a.rate:.1%} | {a.agree_all / a.items:.1%} | {a.max_change:.4f} | "
                f"{a.mean_change:.4f} | {'yes' if a.passes else 'no'}"
            )
        print(
            f"| {row.backend} | {row.precision} | {row.items_per_s:.1f} | {row.ratio:.2f} | "
            f"{cells} |"
        )


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=200, help="smoke test items validated")
    parser.add_argument("--rounds", type=int, default=5, help="timed passes of each backend")
    parser.add_argument("--seconds", type=float, default=20.0, help="timing per served point")
    parser.add_argument("--serve", action="store_true", help="also measure through TorchServe")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()

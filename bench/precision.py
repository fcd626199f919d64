"""Precision benchmark: each CPU backend of the base fused model, validated on a trained model and
timed, printed as tables.

    .venv/bin/python -m bench.precision [--items 600] [--rounds 5] [--no-compile] [--quick]
                                        [--serve] [--seconds 20] [--json PATH]

(as a module from the repository root, so that ``bench/`` does not shadow the ``serving``
package). What it does, with one intra-op thread per core of this process:

1. The model: ``base-random`` (BERT-base + CLIP ViT-B/32 shapes) whose heads are trained for a
   short schedule on the smoke set (:data:`TRAINING`), built once and kept under
   ``<cache_dir>/bench/<MODEL_KEY>`` (with its exported encoders beside it), so later runs start
   at once. OpenVINO int8 is calibrated on smoke training items, never on the items validated.
2. Validation: torch fp32 and each reduced precision score the first ``--items`` items of the
   smoke test, then validation, split; the table says, for items whose calibrated fp32 p_ai
   lies within 0.1 of a band edge, how many decisions equal fp32's and how far p_ai moved
   (serving.model.agreement: pass at 99.5 % agreement and a change of at most 0.05), and the
   agreement on all items.
3. Speed in process, model only: batch 32, captions of exactly 32 tokens, both encoders run;
   items/s of each backend (median of ``--rounds`` passes taken in turn, one of each backend per
   round, so a shared machine's changing load falls on all alike) and its ratio to torch fp32
   (the anchor: absolute figures drift between runs). The warm-up pass is not timed but
   reported: for ``torch.compile`` (bf16 weights, frozen) it is the compilation.
4. With ``--serve``: TorchServe (the ``AIGIS_SERVING__*`` ports, ``<state_dir>/bench-precision``)
   with archives of torch fp32 and of the fastest passing precision, at the worker's pattern
   (requests of 8 JPEG items, 8 in flight), beside the same archive's code path in process from
   the same JPEG bytes (decode, pre-process, model) at the same forward batch: TorchServe's cost
   is the difference.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch

from bench.machine import describe_machine, print_machine
from schemas.decision import Bands
from schemas.settings import Settings
from serving.model.agreement import (
    MAX_P_AI_CHANGE,
    MIN_AGREEMENT,
    Agreement,
    compare,
    near_edges,
)
from serving.model.predictor import Predictor, Scores

BATCH = 32
TOKENS = 32
MIN_NEAR = 100
"""Near-edge items the calibrated scores must give for the check to read them as they are."""


@dataclass(frozen=True)
class Candidate:
    backend: str
    precision: str
    compiled: bool = False
    """torch.compile (inductor, frozen weights): reported, never chosen as a default, since
    every server worker would pay the compilation at start."""


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("torch", "fp32"),
    Candidate("torch", "bf16"),
    Candidate("torch", "bf16", compiled=True),
    Candidate("torch", "int8"),
    Candidate("onnxruntime", "int8"),
    Candidate("openvino", "int8"),
    Candidate("openvino", "bf16"),
)
"""In the order measured; the first is the reference."""


@dataclass(frozen=True)
class Row:
    backend: str
    precision: str
    items_per_s: float
    ratio: float
    """items/s over torch fp32's in the same run."""
    agreement: Agreement | None
    compiled: bool = False
    warm_up_s: float = 0.0
    """The first pass at the timed shape, not timed: for a compiled row, its compilation."""
    calibrated: Agreement | None = None
    """The same comparison on the calibrated p_ai as served (``agreement`` may read spread
    logits: see :class:`Spread`)."""


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    settings = Settings()
    report: dict[str, Any] = {"machine": describe_machine()}
    print_machine(report["machine"])
    checkpoint = trained_checkpoint(settings.cache_dir / "bench")
    images, captions = _smoke_items(("test", "validation"), args.items)
    candidates = [c for c in CANDIDATES if not (c.compiled and args.no_compile)]
    predictors = [load_candidate(checkpoint, candidate) for candidate in candidates]
    scores = [predictor.scores(images, captions) for predictor in predictors]
    bands = predictors[0].config
    judged, report["validated_on"] = _judged(scores, bands)
    print(f"  validated on {report['validated_on']}", flush=True)
    speeds, warm_ups = _interleaved_speeds(predictors, args.rounds)
    rows: list[Row] = []
    for candidate, score, p_ai, speed, warm_up in zip(
        candidates, scores, judged, speeds, warm_ups, strict=True
    ):
        agreement = calibrated = None
        if rows:
            agreement = compare(judged[0], p_ai, bands)
            calibrated = compare(scores[0].p_ai, score.p_ai, bands)
        ratio = speed / speeds[0]
        rows.append(
            Row(
                candidate.backend,
                candidate.precision,
                speed,
                ratio,
                agreement,
                candidate.compiled,
                warm_up,
                calibrated,
            )
        )
        _print_row(rows[-1])
    del predictors
    _print_table(rows)
    chosen = fastest_passing(rows)
    print(f"\nfastest passing (compiled rows excluded): {chosen.backend} {chosen.precision}")
    report["rows"] = [asdict(row) for row in rows]
    report["chosen"] = [chosen.backend, chosen.precision]
    if args.serve:
        from bench.precision_serve import serve

        report["serving"] = serve(settings, checkpoint, chosen, args.seconds)
    report["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    print(f"\nload average at end: {report['load_average_at_end']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")


TRAINING: Final[dict[str, Any]] = {
    "linear_probe": True,
    "max_steps": 45,
    "batch_size": 16,
    "learning_rate": 2e-3,
}
"""The validation model's schedule: about 1 epoch of the smoke set's 1,200 training items, some
minutes on 2 cores; enough to spread its calibrated p_ai over the bands."""
MODEL_KEY: Final[str] = "base-random-smoke-probe-45x16"
"""Its cache directory's name (a new schedule gets a new key)."""


@dataclass(frozen=True)
class Spread:
    """p_ai = sigmoid((logit - centre) / temperature), spreading fp32's scores over the bands.

    A model trained for minutes on the smoke set is little better than chance: its calibrated
    p_ai sit around 0.5, where few decisions can change, so agreement there shows little. When
    fewer than :data:`MIN_NEAR` calibrated scores lie near an edge, the validation reads the
    logits through this spread: fp32's 10th percentile maps to p_ai 0.1 and its 90th to 0.9,
    putting many items near both band edges. A smaller
    temperature than the model's magnifies each precision's logit error: the check is stricter
    than on the calibrated scores.
    """

    centre: float
    temperature: float

    @classmethod
    def of(cls, logits: np.ndarray) -> Spread:
        low, centre, high = np.percentile(logits, [10, 50, 90])
        return cls(float(centre), max(float((high - low) / (2 * np.log(9))), 1e-6))

    def p_ai(self, logits: np.ndarray) -> np.ndarray:
        return _p_ai(logits - self.centre, self.temperature)


def _p_ai(logits: np.ndarray, temperature: float) -> np.ndarray:
    return np.asarray(1 / (1 + np.exp(-np.asarray(logits, dtype=np.float64) / temperature)))


def _judged(scores: list[Scores], bands: Bands) -> tuple[list[np.ndarray], str]:
    """The p_ai the agreement is judged on, and how they were read: as calibrated when at least
    MIN_NEAR of fp32's lie near an edge, else through the :class:`Spread` of the logits."""
    fp32 = scores[0].p_ai
    percentiles = np.percentile(fp32, [0, 10, 50, 90, 100]).round(3).tolist()
    near = int(near_edges(fp32, bands).sum())
    how = f"{near} calibrated near-edge items (fp32 p_ai percentiles 0/10/50/90/100 {percentiles})"
    if near >= MIN_NEAR:
        return [s.p_ai for s in scores], f"calibrated p_ai: {how}"
    spread = Spread.of(scores[0].logits_a)
    return [spread.p_ai(s.logits_a) for s in scores], f"spread logits ({spread}); only {how}"


def trained_checkpoint(cache: Path) -> Path:
    """``base-random`` trained briefly on the smoke set: from the cache, else trained now."""
    target = cache / MODEL_KEY
    if (target / "config.json").is_file():
        return target
    from training.trainer import TrainRequest, train

    partial = cache / f"{MODEL_KEY}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    print(f"training base-random on the smoke set once, into {target} (minutes)", flush=True)
    train(
        TrainRequest(
            data="smoke",
            output=partial,
            preset="base-random",
            name=MODEL_KEY,
            version="1",
            augment=False,
            progress=False,
            **TRAINING,
        )
    )
    partial.replace(target)
    return target


def fastest_passing(rows: list[Row]) -> Row:
    """The fastest uncompiled row whose agreement passes; torch fp32 when none does."""
    passing = [
        row for row in rows if not row.compiled and (row.agreement is None or row.agreement.passes)
    ]
    return max(passing, key=lambda row: row.items_per_s)


def load_candidate(checkpoint: Path, candidate: Candidate) -> Predictor:
    backend, precision = candidate.backend, candidate.precision
    if candidate.compiled:
        # Inductor folds the frozen weights into the compiled graph (inference only).
        torch._inductor.config.freezing = True  # type: ignore[attr-defined]  # untyped config
    encoders = None
    if backend != "torch":
        graph = "int8" if precision == "int8" else "fp32"
        if (backend, precision) == ("openvino", "int8"):
            graph = "openvino-int8"
        encoders = checkpoint.parent / f"{checkpoint.name}-encoders-{graph}"
        if graph == "openvino-int8" and not (encoders / "vision.xml").is_file():
            _export_calibrated(checkpoint, encoders)
    return Predictor.from_checkpoint(
        checkpoint,
        device="cpu",
        backend=backend,
        precision=precision,
        encoders=encoders,
        max_batch=BATCH,
        compile=candidate.compiled,
    )


def _export_calibrated(checkpoint: Path, target: Path) -> None:
    """OpenVINO int8 encoders calibrated on smoke training items."""
    from serving.model.backends import export_encoders
    from serving.model.checkpoint import load_checkpoint
    from serving.model.openvino_int8 import CALIBRATION_ITEMS, calibration_batches

    loaded = load_checkpoint(checkpoint)
    images, captions = _smoke_items(("train",), CALIBRATION_ITEMS)
    batches = calibration_batches(loaded.preprocessor, images, captions)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    started = time.perf_counter()
    export_encoders(
        loaded.model, partial, precision="int8", backend="openvino", calibration=batches
    )
    partial.replace(target)
    print(
        f"  OpenVINO int8 calibrated on {len(images)} items in "
        f"{time.perf_counter() - started:.0f} s"
    )


def _smoke_items(splits: Sequence[str], count: int) -> tuple[list[Any], list[str | None]]:
    """The first ``count`` items of the smoke set's ``splits``, in that order."""
    from serving.imageio import decode_image
    from training.data import load_split

    samples = [s for split in splits for s in load_split("smoke", split, normalise=False)][:count]
    return [decode_image(s.image) for s in samples], [s.caption for s in samples]


def _interleaved_speeds(
    predictors: list[Predictor], rounds: int
) -> tuple[list[float], list[float]]:
    """Items/s of each model alone at batch 32 with 32-token captions: the median of ``rounds``
    passes each, taken in turn (one pass of each per round, after one warm-up pass), so that
    the load of a shared machine falls on all of them alike; and each warm-up's seconds."""
    first = predictors[0]
    size = first.config.preprocess.image_size
    tokenizer = first.checkpoint.tokenizer
    pixels = torch.randn(BATCH, 3, size, size)
    ids = torch.randint(len(tokenizer) // 2, len(tokenizer), (BATCH, TOKENS))
    ids[:, 0], ids[:, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id
    mask = torch.ones_like(ids)
    times: list[list[float]] = [[] for _ in predictors]
    for _ in range(rounds + 1):
        for predictor, measured in zip(predictors, times, strict=True):
            started = time.perf_counter()
            predictor.forward(pixels, ids, mask)
            measured.append(time.perf_counter() - started)
    speeds = [BATCH / float(np.median(measured[1:])) for measured in times]
    return speeds, [measured[0] for measured in times]


def _label(row: Row) -> str:
    return f"{row.backend} | {row.precision}" + (" compiled" if row.compiled else "")


def _print_row(row: Row) -> None:
    agreement = row.agreement
    verdict = "reference" if agreement is None else ("passes" if agreement.passes else "fails")
    print(
        f"  {_label(row):<24} {row.items_per_s:7.1f} items/s ({row.ratio:.2f}x fp32), "
        f"warm-up {row.warm_up_s:.1f} s, {verdict}",
        flush=True,
    )


def _print_table(rows: list[Row]) -> None:
    print(
        f"\n## validation (near edge: fp32 p_ai within 0.1 of a threshold; pass: >= "
        f"{MIN_AGREEMENT:.1%} agreement, max change <= {MAX_P_AI_CHANGE})\n"
    )
    print(
        "| backend | precision | items/s (batch 32, 32 tokens) | x fp32 | warm-up s | "
        "near-edge items | decisions = fp32 (near edge) | decisions = fp32 (all) | "
        "max p_ai change | mean change | passes | calibrated: near-edge, = fp32, max change |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for row in rows:
        a = row.agreement
        c = row.calibrated
        if a is None or c is None:
            cells = "- | - | - | - | - | reference | -"
        else:
            cells = (
                f"{a.near} | {a.rate:.1%} | {a.agree_all / a.items:.1%} | {a.max_change:.4f} | "
                f"{a.mean_change:.4f} | {'yes' if a.passes else 'no'} | "
                f"{c.near}, {c.rate:.1%}, {c.max_change:.4f}"
            )
        print(
            f"| {_label(row)} | {row.items_per_s:.1f} | {row.ratio:.2f} | {row.warm_up_s:.1f} | "
            f"{cells} |"
        )


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--items", type=int, default=600, help="smoke test, then validation, items validated"
    )
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    parser.add_argument(
        "--quick", action="store_true", help="300 items, 3 rounds, no compiled row (the suite's)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="timed passes of each backend")
    parser.add_argument("--seconds", type=float, default=20.0, help="timing per served point")
    parser.add_argument("--serve", action="store_true", help="also measure through TorchServe")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.rounds, args.no_compile = min(args.items, 300), 3, True
    return args


if __name__ == "__main__":
    main()

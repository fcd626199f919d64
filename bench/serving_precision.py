"""Part of ``bench.serving`` (run it there): fp32, bf16 weights and dynamic int8 of one
checkpoint in process, no server: items/s at forward batch 32 and how far each moves the
answers on the smoke test split against fp32's."""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.serving_items import Item


@dataclass(frozen=True)
class PrecisionPoint:
    preset: str
    precision: str
    items_per_s: float
    agreement: float
    """Share of smoke test items whose decision equals fp32's."""
    max_delta_p: float
    f1_task_a: float | None


def precision_sweep(
    preset: str,
    checkpoint: Path,
    labelled: list[tuple[Item, int]],
    seconds: float,
    *,
    trained: bool,
) -> list[PrecisionPoint]:
    """fp32, bf16 and int8 of one checkpoint: speed at forward batch 32, and answer drift."""
    import torch

    from serving.imageio import decode_image
    from serving.model.predictor import Predictor

    torch.set_num_threads(len(os.sched_getaffinity(0)))  # the bench owns the machine now
    images = [decode_image(image) for (image, _), _ in labelled]
    captions = [caption for (_, caption), _ in labelled]
    labels = [label for _, label in labelled]
    reference: list[Any] = []
    points = []
    for precision in ("fp32", "bf16", "int8"):
        predictor = Predictor.from_checkpoint(checkpoint, precision=precision, max_batch=32)
        answers = predictor.predict(images, captions)
        if precision == "fp32":
            reference = answers
        speed = _items_per_s(predictor, images[:32], captions[:32], seconds)
        points.append(
            PrecisionPoint(
                preset=preset,
                precision=precision,
                items_per_s=speed,
                agreement=statistics.fmean(
                    a.decision == r.decision for a, r in zip(answers, reference, strict=True)
                ),
                max_delta_p=max(
                    abs(a.p_ai - r.p_ai) for a, r in zip(answers, reference, strict=True)
                ),
                f1_task_a=_f1([a.decision for a in answers], labels) if trained else None,
            )
        )
    return points


def _items_per_s(predictor: Any, images: list[Any], captions: list[Any], seconds: float) -> float:
    predictor.predict(images, captions)  # the first pass pays for lazy set-up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or done == 0:
        predictor.predict(images, captions)
        done += len(images)
    return done / (time.perf_counter() - started)


def _f1(decisions: list[str], labels: list[int]) -> float:
    from sklearn.metrics import f1_score

    predicted = [1 if d == "ai_generated" else 0 for d in decisions]
    return float(f1_score(labels, predicted))


def fastest_correct(points: list[PrecisionPoint], preset: str) -> str:
    """The fastest precision of ``preset`` whose decisions agree with fp32's on 99 % of items."""
    candidates = [p for p in points if p.preset == preset and p.agreement >= 0.99]
    return max(candidates, key=lambda p: p.items_per_s).precision


def print_precision(points: list[PrecisionPoint]) -> None:
    print("\n## precision, in process, forward batch 32\n")
    print("| preset | precision | items/s | decisions = fp32 | max abs p_ai change | Task A F1 |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for p in points:
        f1 = f"{p.f1_task_a:.3f}" if p.f1_task_a is not None else "(random weights)"
        print(
            f"| {p.preset} | {p.precision} | {p.items_per_s:.1f} | {100 * p.agreement:.1f} % | "
            f"{p.max_delta_p:.4f} | {f1} |"
        )

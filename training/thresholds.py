"""Operating points: what a pair of decision bands costs on labelled scores.

A band pair ``(human, ai)`` decides ``ai_generated`` at ``p_ai >= ai``, ``human`` at
``p_ai <= human`` and sends the rest to review (the rule of :mod:`schemas.decision`). On a set of
scores with true Task A labels (``aigis evaluate``'s ``predictions.parquet`` of the gold hold-out):

- false-positive rate: human-made images called AI, over all human-made images;
- recall: AI images called AI, over all AI images;
- precision: AI images among those called AI (1.0 when nothing is called AI);
- miss rate: AI images called human, over all AI images;
- review rate: images sent to review, over all images.

Torch-free and pure: numpy only.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

GRID = np.round(np.arange(0.0, 1.0 + 1e-9, 0.01), 2)
"""Thresholds tried: 0.00 to 1.00 by 0.01."""


@dataclass(frozen=True)
class OperatingPoint:
    human_threshold: float
    ai_threshold: float
    false_positive_rate: float
    recall: float
    precision: float
    miss_rate: float
    review_rate: float
    errors: int
    """Images decided wrongly without review (false positives plus misses)."""

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def sweep(
    p_ai: npt.ArrayLike, label_a: npt.ArrayLike, grid: npt.ArrayLike = GRID
) -> list[OperatingPoint]:
    """Every band pair ``human <= ai`` of ``grid`` on these scores and labels."""
    p = np.asarray(p_ai, dtype=np.float64)
    y = np.asarray(label_a).astype(bool)
    if p.shape != y.shape or p.ndim != 1 or p.size == 0:
        raise ValueError("p_ai and label_a must be two non-empty lists of the same length")
    t = np.asarray(grid, dtype=np.float64)
    ai_scores, human_scores = np.sort(p[y]), np.sort(p[~y])
    n_ai, n_human = ai_scores.size, human_scores.size
    # Per threshold: how many of each class are >= it (called AI) and <= it (called human).
    ai_at_or_above = n_ai - np.searchsorted(ai_scores, t, side="left")
    human_at_or_above = n_human - np.searchsorted(human_scores, t, side="left")
    ai_at_or_below = np.searchsorted(ai_scores, t, side="right")
    human_at_or_below = np.searchsorted(human_scores, t, side="right")
    # With human == ai a score equal to both is called AI (the rule checks AI first), not human.
    ai_below = n_ai - ai_at_or_above
    human_below = n_human - human_at_or_above
    points = []
    for j, a in enumerate(t):
        tp, fp = int(ai_at_or_above[j]), int(human_at_or_above[j])
        for i in range(j + 1):
            misses = int(ai_at_or_below[i] if i < j else ai_below[j])
            decided = tp + fp + misses + int(human_at_or_below[i] if i < j else human_below[j])
            points.append(
                OperatingPoint(
                    human_threshold=float(t[i]),
                    ai_threshold=float(a),
                    false_positive_rate=fp / n_human if n_human else 0.0,
                    recall=tp / n_ai if n_ai else 0.0,
                    precision=tp / (tp + fp) if tp + fp else 1.0,
                    miss_rate=misses / n_ai if n_ai else 0.0,
                    review_rate=1.0 - decided / p.size,
                    errors=fp + misses,
                )
            )
    return points


def operating_point(
    p_ai: npt.ArrayLike, label_a: npt.ArrayLike, human: float, ai: float
) -> OperatingPoint:
    """The rates of the one band pair ``(human, ai)``."""
    (point,) = [
        q
        for q in sweep(p_ai, label_a, sorted({human, ai}))
        if q.human_threshold == human and q.ai_threshold == ai
    ]
    return point


def suggest(
    points: list[OperatingPoint], *, max_fpr: float, max_review_rate: float
) -> OperatingPoint | None:
    """The band pair that meets both limits with the fewest images decided wrongly, then the
    highest recall, then the lowest review rate (then the lowest thresholds); None when no
    pair meets both."""
    fitting = [
        p
        for p in points
        if p.false_positive_rate <= max_fpr + 1e-12 and p.review_rate <= max_review_rate + 1e-12
    ]
    if not fitting:
        return None
    return min(
        fitting,
        key=lambda p: (p.errors, -p.recall, p.review_rate, p.ai_threshold, p.human_threshold),
    )


def at(points: list[OperatingPoint], human: float, ai: float) -> OperatingPoint | None:
    """The point of the pair ``(human, ai)``, when the grid has it."""
    return next(
        (
            p
            for p in points
            if abs(p.human_threshold - human) < 1e-9 and abs(p.ai_threshold - ai) < 1e-9
        ),
        None,
    )


def single_thresholds(
    points: Sequence[OperatingPoint], human: float, step: float = 0.05
) -> list[OperatingPoint]:
    """The AI threshold at every ``step`` with the human threshold at ``human`` (or at the AI
    threshold, below it): what one threshold costs while the serving human band stays."""
    return [
        p
        for p in points
        if abs(p.human_threshold - min(human, p.ai_threshold)) < 1e-9
        and abs(p.ai_threshold / step - round(p.ai_threshold / step)) < 1e-6
    ]


def write_csv(points: Sequence[OperatingPoint], path: Path) -> Path:
    """Write every point's rates as CSV, one row per band pair."""
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(OperatingPoint.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(p.as_dict() for p in points)
    return path

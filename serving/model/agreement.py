"""Does a reduced precision decide like fp32? The check a precision passes before it is a default.

Saturated scores agree by construction (p_ai 0.999 stays above any threshold whatever the
precision), so agreement is measured where it can fail: on items whose fp32 p_ai lies within
``margin`` (0.1) of a band edge (the human or the AI threshold of schemas/decision.py). There a
precision passes when at least :data:`MIN_AGREEMENT` of the decisions equal fp32's and no p_ai
moves by more than :data:`MAX_P_AI_CHANGE`. Torch-free: scores in, verdict out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from schemas.decision import Bands, decide

__all__ = ["MAX_P_AI_CHANGE", "MIN_AGREEMENT", "Agreement", "compare", "near_edges"]

MIN_AGREEMENT: Final[float] = 0.995
"""Share of near-edge decisions that must equal fp32's."""
MAX_P_AI_CHANGE: Final[float] = 0.05
"""Largest |p_ai - fp32 p_ai| allowed on a near-edge item: half the margin, so an item moves at
most halfway towards the next band edge it was measured near."""
MARGIN: Final[float] = 0.1


@dataclass(frozen=True)
class Agreement:
    """How a reduced precision's scores compare with fp32's on the same items."""

    items: int
    """All items compared."""
    near: int
    """Items whose fp32 p_ai lies within the margin of a band edge: what is judged."""
    agree: int
    """Near-edge items whose decision equals fp32's."""
    agree_all: int
    """Items of all whose decision equals fp32's."""
    max_change: float
    """Largest |p_ai change| on near-edge items (0 when there are none)."""
    mean_change: float

    @property
    def rate(self) -> float:
        """Decision agreement on near-edge items (1 when there are none)."""
        return self.agree / self.near if self.near else 1.0

    @property
    def passes(self) -> bool:
        """At least MIN_AGREEMENT agreement and no change over MAX_P_AI_CHANGE, on at least one
        near-edge item (a set without any says nothing)."""
        return self.near > 0 and self.rate >= MIN_AGREEMENT and self.max_change <= MAX_P_AI_CHANGE


def near_edges(p_ai: np.ndarray, bands: Bands, margin: float = MARGIN) -> np.ndarray:
    """Boolean mask of the scores within ``margin`` of the human or the AI threshold."""
    scores = np.asarray(p_ai, dtype=np.float64)
    edges = (bands.human_threshold, bands.ai_threshold)
    return np.logical_or.reduce([np.abs(scores - edge) <= margin for edge in edges])


def compare(
    reference: np.ndarray, reduced: np.ndarray, bands: Bands, margin: float = MARGIN
) -> Agreement:
    """``reduced`` p_ai against the fp32 ``reference`` p_ai of the same items, in order."""
    reference = np.asarray(reference, dtype=np.float64)
    reduced = np.asarray(reduced, dtype=np.float64)
    if reference.shape != reduced.shape or reference.ndim != 1:
        raise ValueError(
            f"compare one score per item: got shapes {reference.shape} and {reduced.shape}"
        )
    same = np.array(
        [decide(a, bands) == decide(b, bands) for a, b in zip(reference, reduced, strict=True)],
        dtype=bool,
    )
    mask = near_edges(reference, bands, margin)
    change = np.abs(reduced - reference)[mask]
    return Agreement(
        items=len(reference),
        near=int(mask.sum()),
        agree=int(same[mask].sum()),
        agree_all=int(same.sum()),
        max_change=float(change.max()) if change.size else 0.0,
        mean_change=float(change.mean()) if change.size else 0.0,
    )

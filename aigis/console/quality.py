"""The model's precision on what it decided alone, measured on quality samples: confident
verdicts that the worker also sent to review (``qa_sample``) and a reviewer then labelled.

A sample counts as correct when the reviewer's Task A label matches the model's decision (AI
for ``ai_generated``, human for ``human``). Intervals are Wilson score intervals (95 %), which
stay inside [0, 1] and are honest for small counts.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import Engine, select

from aigis.console.db import decisions, items

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Precision:
    """Precision of the model's ``decision`` within one group of samples."""

    by: str
    """``source`` or ``generator`` (the generator the model named)."""
    group: str
    decision: str
    samples: int
    correct: int
    low: float
    high: float

    @property
    def precision(self) -> float:
        return self.correct / self.samples if self.samples else 0.0


def wilson(correct: int, samples: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``correct`` successes in ``samples`` trials."""
    if samples <= 0:
        return 0.0, 1.0
    p = correct / samples
    denominator = 1 + z * z / samples
    centre = (p + z * z / (2 * samples)) / denominator
    margin = z * math.sqrt(p * (1 - p) / samples + z * z / (4 * samples * samples)) / denominator
    return max(0.0, centre - margin), min(1.0, centre + margin)


def quality_report(engine: Engine) -> list[Precision]:
    """Per source and per named generator, the precision of each of the model's decisions."""
    query = (
        select(items.c.source, items.c.generator, decisions.c.model_decision, decisions.c.label_a)
        .join(decisions, decisions.c.item_id == items.c.id)
        .where(items.c.band == "qa_sample", decisions.c.revoked.is_(False))
    )
    counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    with engine.connect() as conn:
        for source, generator, decision, label_a in conn.execute(query):
            correct = int(label_a == (1 if decision == "ai_generated" else 0))
            for by, group in (("source", source or "-"), ("generator", generator)):
                counts[(by, group, decision)][0] += 1
                counts[(by, group, decision)][1] += correct
    return [
        Precision(by, group, decision, n, k, *wilson(k, n))
        for (by, group, decision), (n, k) in sorted(counts.items())
    ]

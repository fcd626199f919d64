"""Which pseudo-labels a retraining cycle trains on.

Guards against the failure modes of self-training: only confident labels (``threshold`` on the
lower of the two task confidences), a cap per class so the most frequent verdict cannot swamp the
others (class imbalance, selection bias), and never an image of the gold hold-out (train-test
contamination). Within a class the most confident labels are kept. Torch-free.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence, Set
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from training.labelstore.records import Origin


@dataclass(frozen=True)
class Selection:
    """The selected records and how many were dropped at each step."""

    table: pa.Table
    counts: dict[str, int]
    """``available``, ``in_holdout``, ``below_threshold``, ``unknown_generator``, ``no_image``,
    ``over_cap``, ``selected``, and ``class.<generator>`` per selected class."""


def select_pseudo_labels(
    table: pa.Table,
    *,
    threshold: float,
    max_per_class: int,
    exclude: Set[str],
    generators: Sequence[str],
) -> Selection:
    """Select from ``table`` (deduplicated store records) as the module docstring says.

    Only records of origin ``pseudo`` are considered; ``exclude`` holds image hashes of the
    hold-out; ``generators`` are the classes the model being fine-tuned predicts.
    """
    counts: Counter[str] = Counter()
    table = table.filter(pc.equal(table["origin"], Origin.PSEUDO.value))
    counts["available"] = table.num_rows

    def keep(mask: pa.ChunkedArray | pa.Array, dropped: str) -> None:
        nonlocal table
        before = table.num_rows
        table = table.filter(mask)
        counts[dropped] = before - table.num_rows

    keep(
        pc.invert(pc.is_in(table["image_sha256"], pa.array(sorted(exclude), pa.string()))),
        "in_holdout",
    )
    keep(pc.greater_equal(pc.fill_null(table["confidence"], 0.0), threshold), "below_threshold")
    keep(pc.is_in(table["generator"], pa.array(list(generators), pa.string())), "unknown_generator")
    keep(pc.or_(pc.is_valid(table["image_blob"]), pc.is_valid(table["image_uri"])), "no_image")

    ordered = table.sort_by([("confidence", "descending"), ("image_sha256", "ascending")])
    taken: Counter[str] = Counter()
    rows = []
    for index, generator in enumerate(ordered["generator"].to_pylist()):
        if taken[generator] < max_per_class:
            taken[generator] += 1
            rows.append(index)
    selected = ordered.take(pa.array(rows, pa.int64()))
    counts["over_cap"] = ordered.num_rows - selected.num_rows
    counts["selected"] = selected.num_rows
    for generator, n in sorted(taken.items()):
        counts[f"class.{generator}"] = n
    return Selection(selected, dict(counts))

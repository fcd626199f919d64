"""Reduce many records of an image to the one that counts.

Input is at-least-once, so an image may appear in several shards and several times in one. The
label that counts is the latest human decision when there is one, else the pseudo-label with the
highest confidence (the latest among equals). Applying this to any superset of the same records
gives the same answer, which is what makes redelivery and compaction harmless.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from training.labelstore.records import SCHEMA, Origin

_RANK = "__is_human"
_SCORE = "__score"


def latest_labels(table: pa.Table) -> pa.Table:
    """One row per ``image_sha256``, chosen as the module docstring says, sorted by hash."""
    if table.num_rows == 0:
        return table
    ranked = table.append_column(
        _RANK, pc.cast(pc.equal(table["origin"], Origin.HUMAN.value), pa.int8())
    ).append_column(_SCORE, pc.fill_null(table["confidence"], 1.0))
    ordered = ranked.sort_by(
        [
            ("image_sha256", "ascending"),
            (_RANK, "descending"),
            (_SCORE, "descending"),
            ("labelled_at", "descending"),
            ("stored_at", "descending"),
        ]
    )
    hashes = ordered["image_sha256"].combine_chunks()
    # A row is kept when it is the first of its hash in this order.
    keep = pa.concat_arrays([pa.array([True]), pc.not_equal(hashes[1:], hashes[:-1])])
    return ordered.filter(keep).drop_columns([_RANK, _SCORE]).cast(SCHEMA)

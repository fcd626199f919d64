"""One label per image as the store keeps it, and its Arrow schema.

A record comes from a ``PseudoLabel`` (origin ``pseudo``) or a ``ReviewDecision`` (origin
``human``). ``generator`` always names the Task B class; ``label_b`` is its index in the CT2 list
(:data:`schemas.labels.GENERATORS`) and is null for a generator outside that list.
``generator_name`` is the generator a reviewer named when the label set had no class for it
(``generator`` is then ``other``); shards written before it existed read it as null.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

import pyarrow as pa

from schemas.labels import GENERATORS
from schemas.messages import PseudoLabel, ReviewDecision

FORMAT_VERSION: Final[int] = 1
"""Version of the shard schema and commit layout; readers refuse newer ones."""


class Origin(StrEnum):
    """Where a label came from. A human decision always outranks a pseudo-label."""

    HUMAN = "human"
    PSEUDO = "pseudo"


_TIMESTAMP = pa.timestamp("us", tz="UTC")

SCHEMA: Final[pa.Schema] = pa.schema(
    [
        pa.field("image_sha256", pa.string(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("label_a", pa.int8(), nullable=False),
        pa.field("label_b", pa.int16()),
        pa.field("generator", pa.string(), nullable=False),
        pa.field("confidence", pa.float32()),
        pa.field("confidence_a", pa.float32()),
        pa.field("confidence_b", pa.float32()),
        pa.field("caption", pa.string()),
        pa.field("image_blob", pa.string()),
        pa.field("image_uri", pa.string()),
        pa.field("model_name", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("reviewer", pa.string()),
        pa.field("event_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("generator_name", pa.string()),
        pa.field("labelled_at", _TIMESTAMP, nullable=False),
        pa.field("stored_at", _TIMESTAMP, nullable=False),
    ],
    metadata={"aigis.format_version": str(FORMAT_VERSION)},
)
"""Columns of every shard. ``confidence`` is min(confidence_a, confidence_b), null for humans."""


@dataclass(frozen=True, slots=True)
class LabelRecord:
    """One row of a shard. ``image_blob`` is a path relative to the store root."""

    image_sha256: str
    origin: Origin
    label_a: int
    label_b: int | None
    generator: str
    labelled_at: datetime
    stored_at: datetime
    confidence: float | None = None
    confidence_a: float | None = None
    confidence_b: float | None = None
    caption: str | None = None
    image_blob: str | None = None
    image_uri: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    reviewer: str | None = None
    event_id: str | None = None
    source: str | None = None
    generator_name: str | None = None

    @classmethod
    def from_pseudo_label(
        cls, message: PseudoLabel, *, image_blob: str | None, stored_at: datetime | None = None
    ) -> LabelRecord:
        name = message.generators[message.label_b]
        return cls(
            image_sha256=message.image_sha256,
            origin=Origin.PSEUDO,
            label_a=message.label_a,
            label_b=_ct2_index(name),
            generator=name,
            labelled_at=message.labelled_at,
            stored_at=stored_at or datetime.now(UTC),
            confidence=min(message.confidence_a, message.confidence_b),
            confidence_a=message.confidence_a,
            confidence_b=message.confidence_b,
            caption=message.caption,
            image_blob=image_blob,
            image_uri=message.image_uri,
            model_name=message.model_name,
            model_version=message.model_version,
            event_id=message.event_id,
            source=message.source,
        )

    @classmethod
    def from_review_decision(
        cls, message: ReviewDecision, *, image_blob: str | None, stored_at: datetime | None = None
    ) -> LabelRecord:
        name = message.generators[message.label_b]
        return cls(
            image_sha256=message.image_sha256,
            origin=Origin.HUMAN,
            label_a=message.label_a,
            label_b=_ct2_index(name),
            generator=name,
            labelled_at=message.decided_at,
            stored_at=stored_at or datetime.now(UTC),
            caption=message.caption,
            image_blob=image_blob,
            image_uri=message.image_uri,
            reviewer=message.reviewer,
            event_id=message.event_id,
            generator_name=message.generator_name,
        )


def _ct2_index(name: str) -> int | None:
    return GENERATORS.index(name) if name in GENERATORS else None


def to_table(records: list[LabelRecord]) -> pa.Table:
    """Records as an Arrow table of :data:`SCHEMA`."""
    columns: dict[str, list[Any]] = {f.name: [] for f in fields(LabelRecord)}
    for record in records:
        for name, value in asdict(record).items():
            columns[name].append(value)
    return pa.Table.from_pydict(columns, schema=SCHEMA)

"""Micro-batches: collect records from the consumer, and the offsets a batch commits."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kafka.structs import OffsetAndMetadata, TopicPartition

from schemas.fields import ConsumedRecord

_IDLE_POLL_MS = 200
"""Longest single wait for a first record, so that a stop request is noticed quickly."""


class Poller(Protocol):
    def poll(
        self, timeout_ms: int = ..., max_records: int | None = ...
    ) -> dict[Any, list[Any]]: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...


@dataclass(frozen=True)
class Batch:
    """Records read in one micro-batch, in poll order (offsets increase within a partition)."""

    records: Sequence[ConsumedRecord]

    def __len__(self) -> int:
        return len(self.records)

    def partitions(self) -> set[TopicPartition]:
        return {TopicPartition(r.topic, r.partition) for r in self.records}

    def next_offsets(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """Per partition, the offset to commit once the whole batch is done (last + 1)."""
        out: dict[TopicPartition, OffsetAndMetadata] = {}
        for r in self.records:
            tp = TopicPartition(r.topic, r.partition)
            if tp not in out or out[tp].offset <= r.offset:
                out[tp] = OffsetAndMetadata(r.offset + 1, "", -1)
        return out

    def first_offsets(self) -> dict[TopicPartition, int]:
        """Per partition, the first offset of the batch: where to rewind to if it is aborted."""
        out: dict[TopicPartition, int] = {}
        for r in self.records:
            tp = TopicPartition(r.topic, r.partition)
            out[tp] = min(out.get(tp, r.offset), r.offset)
        return out

    def halves(self) -> tuple[Batch, Batch]:
        """The first and second half in poll order: within a partition every record of the
        first comes before every record of the second, so committing the first half alone
        commits a prefix of each partition."""
        middle = len(self.records) // 2
        return Batch(self.records[:middle]), Batch(self.records[middle:])

    def without(self, partitions: Collection[TopicPartition]) -> Batch:
        """The batch less the records of ``partitions`` (revoked ones: their new owner re-reads)."""
        gone = set(partitions)
        return Batch([r for r in self.records if TopicPartition(r.topic, r.partition) not in gone])


def collect(
    consumer: Poller,
    *,
    max_records: int,
    timeout_ms: int,
    stop: threading.Event,
    max_bytes: int | None = None,
) -> Batch:
    """Poll until ``max_records`` records, ``max_bytes`` of record values, or ``timeout_ms``
    after the first record arrived, whichever comes first.

    Waits for the first record in short polls so that ``stop`` is honoured within
    ``_IDLE_POLL_MS``; returns an empty batch when none arrived in that time. A batch always
    takes its first record, however large; records polled past the byte budget are given back
    (their partitions are sought back to them) for the next batch.
    """
    records: list[ConsumedRecord] = []
    size = 0
    deadline: float | None = None
    while len(records) < max_records and not stop.is_set():
        if deadline is None:
            wait_ms = _IDLE_POLL_MS
        else:
            # Short polls up to the deadline, so a stop request is seen within _IDLE_POLL_MS.
            wait_ms = min(_IDLE_POLL_MS, int((deadline - time.monotonic()) * 1000))
            if wait_ms <= 0:
                break
        polled = consumer.poll(timeout_ms=wait_ms, max_records=max_records - len(records))
        full = False
        for tp, partition_records in polled.items():
            for record in partition_records:
                if max_bytes is not None and records and size + _size(record) > max_bytes:
                    consumer.seek(tp, record.offset)
                    full = True
                    break
                records.append(record)
                size += _size(record)
        if not records or full:
            break
        if deadline is None:
            deadline = time.monotonic() + timeout_ms / 1000
    return Batch(records)


def _size(record: ConsumedRecord) -> int:
    return len(record.value or b"") + len(record.key or b"")

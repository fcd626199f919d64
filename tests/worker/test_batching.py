"""Micro-batch collection and the offsets a batch commits."""

from __future__ import annotations

import threading
import time
from collections import namedtuple
from typing import Any

import pytest
from kafka.structs import TopicPartition

from worker.runtime.batch import Batch, collect

pytestmark = pytest.mark.unit

Rec = namedtuple("Rec", "topic partition offset key value")


class ScriptedPoller:
    """Answers each poll with the next scripted mapping, then with nothing (after waiting)."""

    def __init__(self, *answers: dict[Any, list[Rec]]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[int, int | None]] = []
        self.sought: list[tuple[Any, int]] = []

    def seek(self, partition: Any, offset: int) -> None:
        self.sought.append((partition, offset))

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Rec]]:
        self.calls.append((timeout_ms, max_records))
        if self.answers:
            return self.answers.pop(0)
        time.sleep(timeout_ms / 1000)
        return {}


def recs(partition: int, *offsets: int) -> list[Rec]:
    return [Rec("t", partition, o, None, b"") for o in offsets]


def test_batch_closes_at_its_size() -> None:
    poller = ScriptedPoller({0: recs(0, 0, 1, 2)}, {1: recs(1, 5, 6)}, {0: recs(0, 3)})
    batch = collect(poller, max_records=5, timeout_ms=10_000, stop=threading.Event())
    assert len(batch) == 5
    # Each poll asks only for what the batch still lacks.
    assert [c[1] for c in poller.calls] == [5, 2]


def test_batch_closes_at_the_deadline_after_the_first_record() -> None:
    poller = ScriptedPoller({0: recs(0, 0)})
    started = time.monotonic()
    batch = collect(poller, max_records=100, timeout_ms=150, stop=threading.Event())
    elapsed = time.monotonic() - started
    assert len(batch) == 1
    assert 0.1 <= elapsed < 1.0


def test_an_idle_topic_gives_an_empty_batch_quickly() -> None:
    batch = collect(ScriptedPoller(), max_records=10, timeout_ms=60_000, stop=threading.Event())
    assert len(batch) == 0


def test_a_stop_request_closes_the_batch_with_what_it_has() -> None:
    stop = threading.Event()
    poller = ScriptedPoller({0: recs(0, 0, 1)})
    original = poller.poll

    def poll_then_stop(timeout_ms: int = 0, max_records: int | None = None) -> Any:
        out = original(timeout_ms, max_records)
        stop.set()
        return out

    poller.poll = poll_then_stop  # type: ignore[method-assign]
    batch = collect(poller, max_records=10, timeout_ms=60_000, stop=stop)
    assert [r.offset for r in batch.records] == [0, 1]


def test_offsets_to_commit_are_last_plus_one_per_partition() -> None:
    batch = Batch([*recs(0, 4, 5, 6), *recs(1, 10)])
    offsets = batch.next_offsets()
    assert {tp: om.offset for tp, om in offsets.items()} == {
        TopicPartition("t", 0): 7,
        TopicPartition("t", 1): 11,
    }
    assert batch.first_offsets() == {TopicPartition("t", 0): 4, TopicPartition("t", 1): 10}


def test_revoked_partitions_leave_the_batch() -> None:
    batch = Batch([*recs(0, 1, 2), *recs(1, 3)])
    kept = batch.without({TopicPartition("t", 0)})
    assert [(r.partition, r.offset) for r in kept.records] == [(1, 3)]
    assert kept.partitions() == {TopicPartition("t", 1)}


def test_a_batch_closes_at_its_byte_budget_and_gives_the_rest_back() -> None:
    big = [Rec("t", 0, o, None, b"x" * 400) for o in range(5)]
    poller = ScriptedPoller({"p0": big, "p1": [Rec("t", 1, 9, None, b"y" * 400)]})
    batch = collect(
        poller, max_records=100, timeout_ms=1000, stop=threading.Event(), max_bytes=1000
    )
    assert [r.offset for r in batch.records] == [0, 1]
    # Both partitions go back to their first record that did not fit, and no further poll ran.
    assert poller.sought == [("p0", 2), ("p1", 9)]
    assert len(poller.calls) == 1


def test_a_record_over_the_budget_alone_still_makes_a_batch() -> None:
    poller = ScriptedPoller({"p0": [Rec("t", 0, 7, None, b"z" * 5000)]})
    batch = collect(poller, max_records=10, timeout_ms=50, stop=threading.Event(), max_bytes=100)
    assert [r.offset for r in batch.records] == [7]


def test_halves_keep_poll_order_within_each_partition() -> None:
    batch = Batch([*recs(0, 1, 2), *recs(1, 7), *recs(0, 3)])
    first, second = batch.halves()
    assert [(r.partition, r.offset) for r in first.records] == [(0, 1), (0, 2)]
    assert [(r.partition, r.offset) for r in second.records] == [(1, 7), (0, 3)]

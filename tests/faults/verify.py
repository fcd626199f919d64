"""What a fault campaign checks: every input record has exactly one outcome (a verdict or a dead
letter, read committed), nothing else came out, and the group committed to the end."""

from __future__ import annotations

import base64
import time
from collections import Counter
from dataclasses import dataclass, field

from kafka.structs import TopicPartition

from schemas import DeadLetter, Verdict
from schemas.codec import decode
from schemas.settings import Settings
from worker import kafka


@dataclass
class Outcome:
    expected: int
    keys: list[str] = field(default_factory=list)
    verdicts: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    unread: list[str] = field(default_factory=list)
    """Output partitions that could not be read to their end."""

    def missing(self, keys: list[str]) -> list[str]:
        return [k for k in keys if self.verdicts[k] + self.dead_letters[k] == 0]

    def duplicated(self, keys: list[str]) -> list[str]:
        return [k for k in keys if self.verdicts[k] + self.dead_letters[k] > 1]

    def summary(self) -> str:
        return (
            f"{self.expected} events, {sum(self.verdicts.values())} verdicts, "
            f"{sum(self.dead_letters.values())} dead letters"
        )

    def problems(self) -> list[str]:
        keys = self.keys
        missing, duplicated = self.missing(keys), self.duplicated(keys)
        strangers = set(self.verdicts) | set(self.dead_letters)
        strangers -= set(keys)
        out = []
        if missing:
            out.append(f"{len(missing)} events without an outcome, e.g. {missing[:8]}")
        if duplicated:
            out.append(f"{len(duplicated)} events with more than one, e.g. {duplicated[:8]}")
        if strangers:
            out.append(f"{len(strangers)} outcomes of no input, e.g. {sorted(strangers)[:8]}")
        if self.unread:
            out.append(f"could not read to the end of {self.unread}")
        return out


def end_offsets(settings: Settings, topic: str) -> dict[TopicPartition, int]:
    consumer = kafka.consumer(settings, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return dict(consumer.end_offsets(parts))
    finally:
        consumer.close(autocommit=False)


def committed_offsets(settings: Settings) -> dict[TopicPartition, int]:
    """The group's committed offsets on the input topic, asked as its members ask (a stable
    read: a transaction still open on an offset raises a retriable error)."""
    consumer = kafka.consumer(settings, group_id=settings.worker.group_id)
    try:
        topic = settings.topics.images
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        offsets = {tp: consumer.committed(tp, timeout_ms=5_000) for tp in parts}
    finally:
        consumer.close(autocommit=False)
    return {tp: offset for tp, offset in offsets.items() if offset is not None}


def read_all(settings: Settings, topic: str, timeout_s: float = 120.0) -> tuple[list[bytes], bool]:
    """Every committed record of ``topic`` (read_committed, from the beginning); whether the
    end of every partition was reached."""
    consumer = kafka.consumer(settings, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            if time.monotonic() > deadline:
                return values, False
            for records in consumer.poll(timeout_ms=500).values():
                values += [r.value for r in records]
        return values, True
    finally:
        consumer.close(autocommit=False)


def check(settings: Settings, keys: list[str]) -> Outcome:
    """Count the outcomes of each input key (its event id, or a dead letter's original key)."""
    outcome = Outcome(len(keys), keys)
    verdicts, complete = read_all(settings, settings.topics.verdicts)
    if not complete:
        outcome.unread.append(settings.topics.verdicts)
    for value in verdicts:
        outcome.verdicts[decode(Verdict, value).event_id] += 1
    letters, complete = read_all(settings, settings.topics.dlq)
    if not complete:
        outcome.unread.append(settings.topics.dlq)
    for value in letters:
        letter = decode(DeadLetter, value)
        key = base64.b64decode(letter.original_key_b64 or "").decode(errors="replace")
        outcome.dead_letters[key] += 1
    return outcome

"""Reading the output topics: what ``aigis tail`` prints.

Reads with ``read_committed`` (only what a committed batch published) and no consumer group, so
tailing never moves anyone's offsets. The text helpers here (:func:`describe`, :func:`shorten`)
are what the command prints around the records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition
from pydantic import BaseModel

from schemas import AigisError, DeadLetter, PseudoLabel, ReviewItem, SchemaError, Verdict, decode
from schemas.settings import Settings
from worker import kafka as kafka_clients

_MODELS: dict[str, type[BaseModel]] = {
    "verdicts": Verdict,
    "review": ReviewItem,
    "dlq": DeadLetter,
    "pseudo-labels": PseudoLabel,
}
KINDS = tuple(_MODELS)


@dataclass(frozen=True)
class Tailed:
    """One record read: its raw value, and the message it decodes to (None if it does not)."""

    partition: int
    offset: int
    raw: bytes
    message: BaseModel | None


def topic_of(settings: Settings, kind: str) -> str:
    topics = settings.topics
    return {
        "verdicts": topics.verdicts,
        "review": topics.review,
        "dlq": topics.dlq,
        "pseudo-labels": topics.pseudo_labels,
    }[kind]


def tail(
    settings: Settings,
    kind: str,
    *,
    from_beginning: bool = False,
    count: int | None = None,
    idle_exit_s: float | None = None,
    stop: Callable[[], bool] = lambda: False,
    on_idle: Callable[[int], None] | None = None,
    to_end: bool = False,
) -> Iterator[Tailed]:
    """Yield records of ``kind`` as they arrive (all of them first with ``from_beginning``).

    Ends after ``count`` records, after ``idle_exit_s`` without one, when ``stop()`` is true, or
    with ``to_end`` once every partition is read past everything written to it before the tail
    began: a transaction that was open then (or whose commit markers were not yet written) holds
    it up until it ends, so give ``stop`` a deadline.
    ``on_idle(read_so_far)`` is called once each time the topic runs dry: at the first empty poll
    after the start or after a record, not at every poll.
    """
    topic, model = topic_of(settings, kind), _MODELS[kind]
    consumer = kafka_clients.consumer(settings, group_id=None)
    try:
        parts = partitions(consumer, topic)
        if not parts:
            raise AigisError(
                f"topic {topic} does not exist at {settings.kafka.bootstrap_servers}; "
                "`aigis dev up` creates the topics, or check settings.topics"
            )
        consumer.assign(parts)
        if from_beginning:
            consumer.seek_to_beginning(*parts)
        else:
            consumer.seek_to_end(*parts)
        ends = _written(settings, parts) if to_end else None
        seen, last, idle = 0, time.monotonic(), False
        while not stop() and (count is None or seen < count):
            if ends is not None and all((consumer.position(p) or 0) >= ends[p] for p in parts):
                return
            polled = consumer.poll(timeout_ms=200)
            if not polled:
                if not idle and on_idle is not None:
                    on_idle(seen)
                idle = True
                if idle_exit_s is not None and time.monotonic() - last >= idle_exit_s:
                    return
                continue
            last, idle = time.monotonic(), False
            for record in (r for records in polled.values() for r in records):
                yield Tailed(
                    record.partition, record.offset, record.value, _decode(model, record.value)
                )
                seen += 1
                if count is not None and seen >= count:
                    return
    finally:
        consumer.close(autocommit=False)


def describe(settings: Settings, kind: str, *, from_beginning: bool) -> str:
    """The header of a tail: what it follows, where, and from which point."""
    start = "from the beginning" if from_beginning else "new messages only"
    return (
        f"following {kind} on {topic_of(settings, kind)} at {settings.kafka.bootstrap_servers} "
        f"({start}, committed only); Ctrl+C stops"
    )


def idle_note(read_so_far: int) -> str:
    """What a tail says once when the topic runs dry."""
    if read_so_far == 0:
        return "waiting for messages…"
    return f"waiting for more messages ({read_so_far} read so far)…"


def shorten(text: str, width: int) -> str:
    """``text`` on one line in at most ``width`` characters, cut at a word boundary with an
    ellipsis when it is longer. Only a single word longer than ``width`` is cut inside itself."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    cut = flat[: width - 1]
    if flat[width - 1] != " " and " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + "…"


def partitions(consumer: Any, topic: str, timeout_s: float = 10.0) -> list[TopicPartition]:
    """The partitions of ``topic``; waits up to ``timeout_s`` for the metadata of a topic that was
    just created. Empty when the topic does not exist."""
    deadline = time.monotonic() + timeout_s
    while not (numbers := consumer.partitions_for_topic(topic)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [TopicPartition(topic, p) for p in sorted(numbers or ())]


def _written(settings: Settings, parts: list[TopicPartition]) -> dict[TopicPartition, int]:
    """The high watermark of each partition: the end of what was written, committed or not (a
    ``read_committed`` consumer's end offsets stop short of a transaction still open)."""
    reader = kafka_clients.consumer(settings, group_id=None, isolation_level="read_uncommitted")
    try:
        ends: dict[TopicPartition, int] = reader.end_offsets(parts)
        return ends
    finally:
        reader.close(autocommit=False)


def _decode(model: type[BaseModel], value: bytes) -> BaseModel | None:
    try:
        return decode(model, value)
    except SchemaError:
        return None

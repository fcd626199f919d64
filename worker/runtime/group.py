"""Consumer-group membership: which partitions a batch may still commit, and transactional ids."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import structlog
from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from schemas.backoff import backoff_delay
from schemas.settings import Settings
from worker.kafka import KafkaUnavailable

log = structlog.get_logger(__name__)

COMMITTED_WAIT_S = 150.0
"""How long a rewind keeps reading a partition's committed offset before the stream stops. A
transaction left open on it (a producer killed mid-batch) answers "unstable" until its
coordinator aborts it, at most the transaction timeout (60 s) later."""


def transactional_id(settings: Settings, slot: int) -> str:
    """Stable per host and process slot, so a restarted worker fences its previous incarnation."""
    instance = settings.worker.instance_id or socket.gethostname()
    return f"{settings.worker.group_id}.{instance}.{slot}"


class RebalanceTracker(ConsumerRebalanceListener):  # type: ignore[misc]
    """Remembers partitions revoked during a batch: their records now belong to another worker."""

    def __init__(self) -> None:
        self.revoked: set[TopicPartition] = set()
        self.assigned_at = float("-inf")

    def on_partitions_revoked(self, revoked: Any) -> None:
        if not revoked:
            return
        self.revoked.update(revoked)
        log.info(
            "partitions_revoked", partitions=sorted(f"{p.topic}:{p.partition}" for p in revoked)
        )

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.assigned_at = time.monotonic()
        log.info(
            "partitions_assigned", partitions=sorted(f"{p.topic}:{p.partition}" for p in assigned)
        )


def backlog(consumer: KafkaConsumer) -> int:
    """Records after ``consumer``'s position on the partitions it holds."""
    partitions = list(consumer.assignment())
    if not partitions:
        return 0
    ends = consumer.end_offsets(partitions)
    return sum(max(0, ends[tp] - consumer.position(tp)) for tp in partitions)


def committed_offset(
    consumer: KafkaConsumer, tp: TopicPartition, stop: threading.Event, stream: str
) -> int | None:
    """``tp``'s committed offset, read stably (None: none committed, or ``stop`` set). A failed
    or unstable read is retried with backoff for up to ``COMMITTED_WAIT_S``; after that
    KafkaUnavailable stops the stream rather than guess where to resume (a restart reads it
    afresh)."""
    deadline = time.monotonic() + COMMITTED_WAIT_S
    attempt = 0
    while not stop.is_set():
        attempt += 1
        try:
            return consumer.committed(tp, timeout_ms=5_000)  # type: ignore[no-any-return]
        except KafkaError as exc:
            log.warning(
                f"{stream}_committed_offset_unread",
                topic=tp.topic,
                partition=tp.partition,
                attempt=attempt,
                error=repr(exc),
            )
            if time.monotonic() >= deadline:
                raise KafkaUnavailable(
                    f"could not read the committed offset of {tp.topic}/{tp.partition} within "
                    f"{COMMITTED_WAIT_S:g} s; stopping rather than guessing where to resume (a "
                    "restart reads it again and loses nothing)"
                ) from exc
            stop.wait(backoff_delay(attempt, 0.5, 5.0))
    return None

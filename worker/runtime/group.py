"""Consumer-group membership: which partitions a batch may still commit, and transactional ids."""

from __future__ import annotations

import socket
import time
from typing import Any

import structlog
from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka.structs import TopicPartition

from schemas.settings import Settings

log = structlog.get_logger(__name__)


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

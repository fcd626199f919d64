"""The console's outbox against real Kafka and Redis: each decision published once, a row in
doubt after a crash checked against the topic, overrides copied to Redis and removed on undo."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry
from sqlalchemy import select, update

from aigis.console.db import open_database, outbox
from aigis.console.metrics import ConsoleMetrics
from aigis.console.outbox import DECISION_HEADER, OutboxPublisher
from aigis.console.queue import Answer, ReviewQueue
from schemas.overrides import HumanLabel, override_key
from schemas.settings import Settings
from tests.aigis.console_support import review_item
from worker import kafka

pytestmark = pytest.mark.integration


def test_each_decision_is_published_once_even_after_a_crash_between_send_and_mark(
    kafka_ready: Settings,
    make_topic: Callable[..., str],
    redis_client: redis.Redis,
    redis_prefix: str,
    read_topic: Callable[..., list[Any]],
    tmp_path: Path,
) -> None:
    topics = kafka_ready.topics.model_copy(update={"review_decisions": make_topic(partitions=2)})
    review = kafka_ready.review.model_copy(update={"publish_delay_s": 0.0})
    redis_settings = kafka_ready.redis.model_copy(update={"override_prefix": redis_prefix})
    settings = kafka_ready.model_copy(
        update={"topics": topics, "review": review, "redis": redis_settings}
    )
    engine = open_database(f"sqlite:///{tmp_path / 'console.db'}")
    queue = ReviewQueue(engine, settings)
    publisher = OutboxPublisher(engine, settings, ConsoleMetrics(CollectorRegistry(), lambda: 0))
    for i in range(3):
        queue.add(review_item(i, f"e-{i}"))

    # A publisher sent the first decision and stopped before marking it: its row is in doubt.
    first = queue.lease("ann")
    assert first is not None
    first_id = queue.decide(first.id, "ann", Answer("human"))
    with engine.begin() as conn:
        row = conn.execute(select(outbox).where(outbox.c.decision_id == first_id)).one()
        conn.execute(update(outbox).values(claimed_until=time.time() - 1))
    producer = kafka.producer(settings)
    producer.send(
        row.topic,
        key=row.key.encode(),
        value=row.payload.encode(),
        headers=[(DECISION_HEADER, first_id.encode())],
    )
    producer.flush(timeout=30)
    producer.close(timeout=5)

    second = queue.lease("ann")
    assert second is not None
    second_id = queue.decide(second.id, "ann", Answer("sdxl"))
    assert publisher.step() == 1  # only the second is sent; the first was found on the topic
    assert publisher.step() == 0
    records = read_topic(topics.review_decisions, 3, timeout_s=5)  # waits to see a third
    ids = sorted(dict(r.headers)[DECISION_HEADER].decode() for r in records)
    assert ids == sorted([first_id, second_id])

    # Both labels are overrides in Redis now; an undo removes the second's.
    stored = redis_client.get(override_key(redis_prefix, second.image_sha256))
    label = HumanLabel.from_json(stored or b"")
    assert label is not None
    assert (label.generator, label.reviewer) == ("sdxl", "ann")
    assert redis_client.exists(override_key(redis_prefix, first.image_sha256))
    assert queue.undo("ann") == second.id
    publisher.step()
    assert not redis_client.exists(override_key(redis_prefix, second.image_sha256))
    publisher.close()
    engine.dispose()

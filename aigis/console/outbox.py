"""Publishing decisions from the outbox, and copying overrides to Redis.

A decision is committed to the database first (with its outbox row); this loop then, for each
row due (``publish_after`` passed, so an undo within ``review.publish_delay_s`` publishes
nothing):

1. claims the row (compare and set on ``claimed_until``: one replica publishes it);
2. sends it to ``topics.review_decisions`` (key ``image_sha256``, header ``aigis-decision-id``)
   and waits for the broker's acknowledgement;
3. marks it published and switches its override on, in one transaction;
4. copies overrides that changed to Redis (``SET`` without expiry, or ``DEL`` once undone).

A row claimed before and still not marked published (its publisher stopped between 2 and 3, or
lost the acknowledgement) is in doubt: before it is sent again, the topic is read from the time
of that claim for its decision id, and a row found there is marked published, not sent twice.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.structs import TopicPartition
from sqlalchemy import Engine, or_, select, update

from aigis.console.db import outbox, overrides
from aigis.console.metrics import ConsoleMetrics
from schemas.errors import AigisError
from schemas.overrides import override_key
from schemas.settings import Settings
from worker import kafka as kafka_clients
from worker import redis_client

log = structlog.get_logger(__name__)

DECISION_HEADER = "aigis-decision-id"
_CLAIM_S = 60.0
_BATCH = 100


class OutboxPublisher:
    """Publishes due outbox rows and syncs overrides; :meth:`run` until ``stop`` is set."""

    def __init__(self, engine: Engine, settings: Settings, metrics: ConsoleMetrics) -> None:
        self._engine = engine
        self._settings = settings
        self._metrics = metrics
        self._producer: KafkaProducer | None = None
        self._redis = redis_client.connect(settings, timeout_s=2.0)

    def run(self, stop: threading.Event, interval_s: float = 0.5) -> None:
        with self._engine.begin() as conn:  # Redis may have lost them: copy them all again
            conn.execute(update(overrides).values(synced=False))
        while not stop.is_set():
            self.step()
            stop.wait(interval_s)
        self.close()

    def step(self) -> int:
        """One round; the number of decisions published. Never raises for an outage."""
        published = 0
        try:
            published = self.publish_due()
        except KafkaError as exc:
            log.warning("review_publish_failed", error=type(exc).__name__, hint="retrying")
            self._close_producer()
        except Exception as exc:
            log.error("review_publish_failed", error=type(exc).__name__)
        try:
            self.sync_overrides()
        except (redis.RedisError, OSError) as exc:
            log.warning("review_override_sync_failed", error=type(exc).__name__, hint="retrying")
        try:
            self._metrics.refresh(self._engine)
        except Exception as exc:
            log.warning("review_metrics_failed", error=type(exc).__name__)
        return published

    def publish_due(self) -> int:
        now = time.time()
        claimed = self._claim(now)
        if not claimed:
            return 0
        on_topic = self._already_sent([r for r in claimed if r.claimed_until is not None])
        sends = [r for r in claimed if r.payload and r.decision_id not in on_topic]
        if sends:
            producer = self._get_producer()
            futures = [
                producer.send(
                    r.topic,
                    key=r.key.encode(),
                    value=r.payload.encode(),
                    headers=[(DECISION_HEADER, r.decision_id.encode())],
                )
                for r in sends
            ]
            producer.flush(timeout=30)
            for future in futures:
                future.get(timeout=30)  # raises the broker's error: the rows stay due
        ids = [r.decision_id for r in claimed]
        with self._engine.begin() as conn:
            conn.execute(
                update(outbox).where(outbox.c.decision_id.in_(ids)).values(published_at=time.time())
            )
            conn.execute(
                update(overrides)
                .where(overrides.c.decision_id.in_(ids))
                .values(active=True, synced=False)
            )
        self._metrics.published.inc(len(sends))
        log.info(
            "review_decisions_published",
            count=len(sends),
            found_on_topic=len(on_topic),
            recorded_only=len(ids) - len(sends) - len(on_topic),
        )
        return len(sends)

    def _already_sent(self, doubtful: list[Any]) -> set[str]:
        """The decision ids of ``doubtful`` rows that are on their topic already, read from a
        little before the earliest of their claims to the end of each partition."""
        if not doubtful:
            return set()
        wanted = {r.decision_id for r in doubtful}
        since_ms = int((min(r.claimed_until for r in doubtful) - _CLAIM_S - 5.0) * 1000)
        found: set[str] = set()
        consumer = kafka_clients.consumer(self._settings, group_id=None)
        try:
            for topic in {r.topic for r in doubtful}:
                parts = [
                    TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()
                ]
                consumer.assign(parts)
                starts = consumer.offsets_for_times(dict.fromkeys(parts, since_ms))
                ends = consumer.end_offsets(parts)
                for tp in parts:
                    start = starts.get(tp)
                    consumer.seek(tp, ends[tp] if start is None else start.offset)
                deadline = time.monotonic() + 30
                while any(consumer.position(tp) < ends[tp] for tp in parts):
                    if time.monotonic() > deadline:  # rows stay in doubt: never send twice
                        raise AigisError(f"could not read {topic} back to check for decisions")
                    for records in consumer.poll(timeout_ms=500).values():
                        for record in records:
                            value = dict(record.headers or []).get(DECISION_HEADER, b"")
                            if value.decode() in wanted:
                                found.add(value.decode())
        finally:
            consumer.close(autocommit=False)
        log.info("review_outbox_checked", in_doubt=len(wanted), found_on_topic=len(found))
        return found

    def sync_overrides(self) -> int:
        """Copy changed overrides to Redis; the number copied."""
        with self._engine.connect() as conn:
            rows = list(
                conn.execute(
                    select(overrides).where(overrides.c.synced.is_(False)).limit(_BATCH * 10)
                )
            )
        if not rows:
            return 0
        prefix = self._settings.redis.override_prefix
        pipe = self._redis.pipeline(transaction=False)
        for row in rows:
            key = override_key(prefix, row.image_sha256)
            if row.active:
                pipe.set(key, row.label_json.encode())
            else:
                pipe.delete(key)
        pipe.execute()
        with self._engine.begin() as conn:
            for row in rows:  # unless it changed meanwhile
                conn.execute(
                    update(overrides)
                    .where(
                        overrides.c.image_sha256 == row.image_sha256,
                        overrides.c.decision_id == row.decision_id,
                        overrides.c.active == row.active,
                    )
                    .values(synced=True)
                )
        return len(rows)

    def _claim(self, now: float) -> list[Any]:
        free = or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now)
        with self._engine.connect() as conn:
            due = list(
                conn.execute(
                    select(outbox)
                    .where(outbox.c.published_at.is_(None), outbox.c.publish_after <= now, free)
                    .order_by(outbox.c.publish_after)
                    .limit(_BATCH)
                )
            )
        claimed = []
        for row in due:
            with self._engine.begin() as conn:
                won = conn.execute(
                    update(outbox)
                    .where(
                        outbox.c.decision_id == row.decision_id,
                        outbox.c.published_at.is_(None),
                        free,
                    )
                    .values(claimed_until=now + _CLAIM_S)
                ).rowcount
            if won == 1:
                claimed.append(row)
        return claimed

    def _get_producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = kafka_clients.producer(self._settings)
        return self._producer

    def _close_producer(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None

    def close(self) -> None:
        self._close_producer()
        self._redis.close()

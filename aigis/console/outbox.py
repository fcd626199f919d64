"""Publishing decisions from the outbox, and copying overrides to Redis.

A decision is committed to the database first (with its outbox row); this loop then, for each
row due (``publish_after`` passed, so an undo within ``review.publish_delay_s`` publishes
nothing):

1. claims the row (compare and set on ``claimed_until``: one replica publishes it);
2. sends it to ``topics.review_decisions`` (key ``image_sha256``, header ``aigis-decision-id``)
   and waits for the broker's acknowledgement;
3. marks it published and switches its override on, in one transaction;
4. copies overrides that changed to Redis (``SET`` without expiry, or ``DEL`` once undone).

A crash between 2 and 3 publishes that row again at restart, under the same decision id, which
consumers can drop; nothing else publishes twice.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaError
from sqlalchemy import Engine, or_, select, update

from aigis.console.db import outbox, overrides
from aigis.console.metrics import ConsoleMetrics
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
        sends = [r for r in claimed if r.payload]
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
            "review_decisions_published", count=len(sends), recorded_only=len(ids) - len(sends)
        )
        return len(sends)

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

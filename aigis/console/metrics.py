"""The console's Prometheus metrics, named ``aigis_review_...``.

Gauges are read from the database (so every replica reports the shared queue); counters count
what this process did. Labels are bands, reviewer logins and agreement, never ids or captions.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import Engine, func, select

from aigis.console.db import items, outbox
from worker.runtime import metrics as _runtime_metrics  # noqa: F401  # no _created series


class ConsoleMetrics:
    def __init__(self, registry: CollectorRegistry, topic_backlog: Callable[[], int]) -> None:
        r = registry
        self._topic_backlog = topic_backlog
        self.queue_depth = Gauge(
            "aigis_review_queue_depth", "Open items in the review queue", ["band"], registry=r
        )
        self.oldest_age = Gauge(
            "aigis_review_oldest_item_age_seconds",
            "Age of the oldest open item in the review queue",
            registry=r,
        )
        self.backlog = Gauge(
            "aigis_review_backlog",
            "Items waiting for a person: open in the queue plus not yet read from the review topic",
            registry=r,
        )
        self.outbox_pending = Gauge(
            "aigis_review_outbox_pending", "Decisions not yet published", registry=r
        )
        self.decisions = Counter(
            "aigis_review_decisions",
            "Decisions taken, by reviewer and whether they agree with the model's lean "
            "(p_ai at or above 0.5 read as AI)",
            ["reviewer", "agreement"],
            registry=r,
        )
        self.published = Counter(
            "aigis_review_decisions_published", "Decisions published to Kafka", registry=r
        )

    def decided(self, reviewer: str, label_a: int, model_p_ai: float) -> None:
        agrees = (model_p_ai >= 0.5) == bool(label_a)
        self.decisions.labels(reviewer, "agree" if agrees else "disagree").inc()

    def refresh(self, engine: Engine) -> None:
        with engine.connect() as conn:
            rows = conn.execute(
                select(items.c.band, func.count(), func.min(items.c.enqueued_at))
                .where(items.c.state == "open")
                .group_by(items.c.band)
            ).all()
            pending = conn.execute(
                select(func.count()).where(outbox.c.published_at.is_(None))
            ).scalar()
        depth = {"needs_review": 0, "qa_sample": 0}
        oldest: float | None = None
        for band, count, first in rows:
            depth[band] = int(count)
            oldest = first if oldest is None else min(oldest, first)
        for band, count in depth.items():
            self.queue_depth.labels(band).set(count)
        self.oldest_age.set(0.0 if oldest is None else max(0.0, time.time() - oldest))
        self.backlog.set(sum(depth.values()) + self._topic_backlog())
        self.outbox_pending.set(int(pending or 0))

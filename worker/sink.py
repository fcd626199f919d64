"""``aigis sink``: pseudo-labels and review decisions from Kafka into the label store.

Reads ``topics.pseudo_labels`` and ``topics.review_decisions`` (read_committed, its own group) on
the stream runtime. A batch closes at ``store.flush_records`` records or ``store.flush_interval_s``
after its first one; it becomes one shard. Records it cannot take go to the DLQ with a reason.
Input is at-least-once and the store deduplicates, so a crash anywhere costs at most a re-read.
Imports no torch: it runs on CPU-only hosts.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter

from schemas.settings import Guarantee, Settings
from training.labelstore.records import LabelRecord
from training.labelstore.store import LabelStore
from worker import kafka as kafka_clients
from worker.intake import RejectedRecordError, to_record
from worker.runtime.app import StreamRuntime
from worker.runtime.batch import Batch
from worker.runtime.checkpoint import Output, dead_letter
from worker.runtime.handler import Handler, StreamConfig
from worker.runtime.metrics import LoopHeartbeat

log = structlog.get_logger(__name__)


class SinkMetrics:
    """Counters of one sink process. Labels carry no ids or content."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.records_in = Counter("aigis_sink_records_in", "Records read", ["topic"], registry=r)
        self.stored = Counter("aigis_sink_stored", "Records committed", ["origin"], registry=r)
        self.dead_letters = Counter(
            "aigis_sink_dead_letters", "Records sent to the DLQ", ["reason"], registry=r
        )
        self.compactions = Counter("aigis_sink_compactions", "Store compactions", registry=r)
        self.loop = LoopHeartbeat("sink", r)


class SinkHandler(Handler):
    """One batch of records becomes one shard of ``store``; dead letters are its outputs.

    Order per batch: (1) write the shard and its commit manifest (the records are now durable and
    visible); (2) the runtime publishes the dead letters and waits for their acknowledgement;
    (3) it commits the offsets. A crash before (3) re-reads the records, which the store
    deduplicates.
    """

    def __init__(self, settings: Settings, store: LabelStore, metrics: SinkMetrics) -> None:
        self._settings = settings
        self._store = store
        self._metrics = metrics
        self._labels: list[LabelRecord] = []
        self._commit_name: str | None = None

    def idle(self) -> None:
        self._metrics.loop.beat()

    def handle(self, batch: Batch) -> Sequence[Output]:
        self._metrics.loop.beat()
        topics = self._settings.topics
        labels: list[LabelRecord] = []
        letters: list[Output] = []
        for record in batch.records:
            self._metrics.records_in.labels(record.topic).inc()
            try:
                labels.append(
                    to_record(
                        self._store, topics, record.topic, record.value, stored_at=datetime.now(UTC)
                    )
                )
            except RejectedRecordError as err:
                log.warning(
                    "sink_rejected",
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    reason=err.reason,
                    detail=err.detail,
                )
                letters.append(dead_letter(record, err.reason, err.detail, self._settings))
                self._metrics.dead_letters.labels(err.reason).inc()
        commit = self._store.append(labels)
        self._labels, self._commit_name = labels, commit.name if commit else None
        return letters

    def committed(self, batch: Batch, outputs: Sequence[Output], seconds: float) -> None:
        self._metrics.loop.beat()
        for label in self._labels:
            self._metrics.stored.labels(label.origin.value).inc()
        log.info(
            "sink_flushed",
            commit=self._commit_name,
            records=len(self._labels),
            dead_letters=len(outputs),
            seconds=round(seconds, 3),
        )
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        config = self._settings.store
        live = len(self._store.snapshot().commits)
        if live < config.compact_after:
            return
        compacted = self._store.compact(min_commits=config.compact_after)
        vacuumed = self._store.vacuum(grace_s=config.vacuum_grace_s)
        self._metrics.compactions.inc()
        log.info(
            "sink_compacted",
            commits=live,
            commit=compacted.name if compacted else None,
            records=compacted.records if compacted else 0,
            vacuumed_commits=vacuumed.commits,
            vacuumed_blobs=vacuumed.blobs,
        )


def stream_config(settings: Settings) -> StreamConfig:
    store = settings.store
    return StreamConfig(
        name="sink",
        group_id=store.group_id,
        topics=(settings.topics.pseudo_labels, settings.topics.review_decisions),
        max_records=store.flush_records,
        batch_timeout_ms=max(1, int(store.flush_interval_s * 1000)),
        session_timeout_ms=store.session_timeout_ms,
        guarantee=Guarantee.AT_LEAST_ONCE,
        metrics_host=store.metrics_host,
        metrics_port=store.metrics_port,
    )


def run_sink(
    settings: Settings, stop: threading.Event, *, idle_exit_s: float | None = None
) -> None:
    """Run the sink until ``stop`` (or ``idle_exit_s`` without a record); the batch in hand is
    stored and committed first."""
    topics = settings.topics
    kafka_clients.ensure_topics(
        settings, [topics.pseudo_labels, topics.review_decisions, topics.dlq]
    )
    store = LabelStore.from_settings(settings)
    registry = CollectorRegistry(auto_describe=True)
    handler = SinkHandler(settings, store, SinkMetrics(registry))
    runtime = StreamRuntime(settings, stream_config(settings), handler, registry=registry)
    log.info("sink_opening", store=store.url)
    try:
        runtime.run(stop, idle_exit_s=idle_exit_s)
    except KafkaError as exc:
        raise kafka_clients.KafkaUnavailable(
            f"the sink lost Kafka ({type(exc).__name__}: {exc}); nothing read since the last "
            "flush was committed, so restarting `aigis sink` loses nothing"
        ) from exc

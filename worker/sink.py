"""``aigis sink``: pseudo-labels and review decisions from Kafka into the label store.

Reads ``topics.pseudo_labels`` and ``topics.review_decisions`` (read_committed, its own group),
buffers records, and flushes one shard every ``store.flush_records`` records or
``store.flush_interval_s`` seconds after the first buffered one, whichever comes first. Records it
cannot take go to the DLQ with a reason. Input is at-least-once and the store deduplicates, so a
crash anywhere costs at most a re-read. Imports no torch: it runs on CPU-only hosts.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import structlog
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from schemas.settings import Settings
from training.labelstore.records import LabelRecord
from training.labelstore.store import LabelStore
from worker import kafka as kafka_clients
from worker.intake import RejectedRecordError, dead_letter, to_record

log = structlog.get_logger(__name__)

_IDLE_POLL_MS = 500
"""Longest single poll while nothing is buffered, so a stop request is seen quickly."""
_ACK_TIMEOUT_S = 60.0


class SinkMetrics:
    """Counters of one sink process, in their own registry. Labels carry no ids or content."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.records_in = Counter("aigis_sink_records_in", "Records read", ["topic"], registry=r)
        self.stored = Counter("aigis_sink_stored", "Records committed", ["origin"], registry=r)
        self.dead_letters = Counter(
            "aigis_sink_dead_letters", "Records sent to the DLQ", ["reason"], registry=r
        )
        self.flush_seconds = Histogram(
            "aigis_sink_flush_seconds", "Time to write, commit and acknowledge a shard", registry=r
        )
        self.compactions = Counter("aigis_sink_compactions", "Store compactions", registry=r)


@dataclass
class _Pending:
    """What has been read since the last flush."""

    records: list[LabelRecord] = field(default_factory=list)
    letters: list[Any] = field(default_factory=list)
    """Futures of DLQ sends; acknowledged before offsets are committed."""
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    first_at: float | None = None

    def __bool__(self) -> bool:
        return bool(self.offsets or self.records)


class LabelSink:
    """Moves records from the consumer into ``store``; dead letters go out on ``producer``."""

    def __init__(
        self,
        settings: Settings,
        store: LabelStore,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        metrics: SinkMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._consumer = consumer
        self._producer = producer
        self.metrics = metrics or SinkMetrics()
        self._pending = _Pending()
        self._active_at: float | None = None
        # The rebalance listener runs on the Kafka client's I/O thread.
        self._offsets_lock = threading.Lock()

    def subscribe(self) -> None:
        """Subscribe to both topics; a rebalance drops the offsets of revoked partitions."""
        topics = self._settings.topics
        self._consumer.subscribe(
            [topics.pseudo_labels, topics.review_decisions], listener=_Rebalance(self)
        )

    def run(self, stop: threading.Event, *, idle_exit_s: float | None = None) -> None:
        """Consume until ``stop`` is set, or until nothing arrived for ``idle_exit_s``; flush.

        Idle time counts from the later of the last record and the last partition assignment,
        so a slow group join never ends a batch run early.
        """
        config = self._settings.store
        while not stop.is_set():
            polled = self._consumer.poll(
                timeout_ms=self._poll_timeout_ms(),
                max_records=max(1, config.flush_records - len(self._pending.records)),
            )
            for records in polled.values():
                for record in records:
                    self._take(record)
                    self._active_at = time.monotonic()
            if self._due():
                self.flush()
            if idle_exit_s is not None and self._active_at is not None and not self._pending:
                idle = time.monotonic() - self._active_at
                if idle >= idle_exit_s:
                    log.info("sink_idle_exit", idle_s=round(idle, 1))
                    break
        self.flush()

    def revoked(self, partitions: Any) -> None:
        """Called when partitions are taken away: their offsets are no longer ours to commit.

        Their buffered records are still written at the next flush; the new owner re-reads
        them from the last committed offset, and the store deduplicates the overlap. (Flushing
        here is not possible: the listener runs on the client's I/O thread, which must not block.)
        """
        with self._offsets_lock:
            for tp in partitions:
                self._pending.offsets.pop(tp, None)

    def assigned(self) -> None:
        """Called when partitions are assigned: the idle clock restarts."""
        self._active_at = time.monotonic()

    def _poll_timeout_ms(self) -> int:
        if self._pending.first_at is None:
            return _IDLE_POLL_MS
        deadline = self._pending.first_at + self._settings.store.flush_interval_s
        return max(0, min(_IDLE_POLL_MS, int((deadline - time.monotonic()) * 1000)))

    def _due(self) -> bool:
        pending = self._pending
        if not pending:
            return False
        if len(pending.records) >= self._settings.store.flush_records:
            return True
        assert pending.first_at is not None
        return time.monotonic() - pending.first_at >= self._settings.store.flush_interval_s

    def _take(self, record: ConsumerRecord) -> None:
        pending = self._pending
        if pending.first_at is None:
            pending.first_at = time.monotonic()
        tp = TopicPartition(record.topic, record.partition)
        with self._offsets_lock:
            pending.offsets[tp] = max(pending.offsets.get(tp, 0), record.offset + 1)
        self.metrics.records_in.labels(record.topic).inc()
        try:
            label = to_record(
                self._store,
                self._settings.topics,
                record.topic,
                record.value,
                stored_at=datetime.now(UTC),
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
            letter = dead_letter(record, err.reason, err.detail)
            pending.letters.append(
                self._producer.send(self._settings.topics.dlq, value=letter, key=record.key)
            )
            self.metrics.dead_letters.labels(err.reason).inc()
            return
        pending.records.append(label)

    def flush(self) -> None:
        """Make everything read so far durable, then commit its offsets.

        Order: (1) write the shard and its commit manifest (the records are now durable and
        visible); (2) wait for every DLQ send to be acknowledged; (3) commit the consumer offsets.
        A crash before (3) re-reads the records, which the store deduplicates.
        """
        pending = self._pending
        if not pending:
            return
        started = time.monotonic()
        commit = self._store.append(pending.records)
        self._producer.flush(timeout=_ACK_TIMEOUT_S)
        for future in pending.letters:
            future.get(timeout=_ACK_TIMEOUT_S)
        with self._offsets_lock:
            offsets = {tp: OffsetAndMetadata(o, "", -1) for tp, o in pending.offsets.items()}
        try:
            if offsets:
                self._consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group moved the partitions on; their new owner re-reads these records, which
            # are already stored, and the store deduplicates them.
            log.warning("sink_commit_failed", error=str(exc))
        for label in pending.records:
            self.metrics.stored.labels(label.origin.value).inc()
        self.metrics.flush_seconds.observe(time.monotonic() - started)
        log.info(
            "sink_flushed",
            commit=commit.name if commit else None,
            records=len(pending.records),
            dead_letters=len(pending.letters),
            offsets={f"{tp.topic}/{tp.partition}": o.offset for tp, o in offsets.items()},
            seconds=round(time.monotonic() - started, 3),
        )
        self._pending = _Pending()
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        config = self._settings.store
        live = len(self._store.snapshot().commits)
        if live < config.compact_after:
            return
        compacted = self._store.compact(min_commits=config.compact_after)
        removed = self._store.vacuum(grace_s=config.vacuum_grace_s)
        self.metrics.compactions.inc()
        log.info(
            "sink_compacted",
            commits=live,
            commit=compacted.name if compacted else None,
            records=compacted.records if compacted else 0,
            vacuumed=removed,
        )


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: LabelSink) -> None:
        self._sink = sink

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._sink.revoked(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._sink.assigned()
        log.info(
            "sink_assigned", partitions=sorted(f"{tp.topic}/{tp.partition}" for tp in assigned)
        )


def run_sink(
    settings: Settings, stop: threading.Event, *, idle_exit_s: float | None = None
) -> None:
    """Open the store and the Kafka clients, run the sink until ``stop``, close everything."""
    topics = settings.topics
    kafka_clients.ensure_topics(
        settings, [topics.pseudo_labels, topics.review_decisions, topics.dlq]
    )
    store = LabelStore.from_settings(settings)
    metrics = SinkMetrics()
    with ExitStack() as stack:
        if settings.store.metrics_port:
            server, _ = start_http_server(settings.store.metrics_port, registry=metrics.registry)
            stack.callback(server.shutdown)
        consumer = kafka_clients.consumer(
            settings,
            group_id=settings.store.group_id,
            session_timeout_ms=settings.store.session_timeout_ms,
        )
        stack.callback(consumer.close, autocommit=False)
        producer = kafka_clients.producer(settings)
        stack.callback(producer.close, timeout=10)
        sink = LabelSink(settings, store, consumer, producer, metrics)
        sink.subscribe()
        log.info("sink_started", store=store.url, group=settings.store.group_id)
        try:
            sink.run(stop, idle_exit_s=idle_exit_s)
        except KafkaError as exc:
            raise kafka_clients.KafkaUnavailable(
                f"the sink lost Kafka ({type(exc).__name__}: {exc}); nothing read since the last "
                "flush was committed, so restarting `aigis sink` loses nothing"
            ) from exc


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM or a first Ctrl+C sets ``stop`` (the loop finishes its step and exits); a second
    Ctrl+C raises KeyboardInterrupt."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)

"""The stream runtime: what every Kafka consumer of aigis needs, written once.

The worker, the sink and the reviewer each say only what to do with a batch (a :class:`Handler`);
:class:`StreamRuntime` owns the rest: the consumer and its group, micro-batches, rebalances, the
checkpoint (a Kafka transaction, or acknowledged outputs then offsets), holding a batch with
backoff while a dependency is down, and the metrics endpoint.

The invariant: a batch's offsets are committed only together with (or after) everything it
produced. Whenever a batch is not committed (dropped after a rebalance, given back by its
handler, aborted, or held until stop) every partition still assigned is rewound to its committed
offset, so consumption restarts there and never from an in-memory position past uncommitted
records. A commit whose outcome is unknown (no answer within the deadline) is treated the same
way and never assumed: the committed offsets are read stably (``read_committed`` consumers ask
with ``require_stable``, so the read waits while a transaction on them is still open) and they
alone say whether the batch went through. A read that fails or times out is retried, never
guessed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack

import structlog
from kafka import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import TopicPartition
from prometheus_client import CollectorRegistry

from schemas.backoff import backoff_delay
from schemas.settings import Settings
from worker import kafka as kafka_clients
from worker.runtime import clients
from worker.runtime.batch import Batch, collect
from worker.runtime.checkpoint import BatchCommitError, Output, dead_letter, open_checkpoint
from worker.runtime.group import RebalanceTracker, backlog, committed_offset
from worker.runtime.handler import (
    DependencyDownError,
    Handler,
    RunStats,
    StreamConfig,
    where_raised,
)
from worker.runtime.metrics import RuntimeMetrics, serve_metrics

log = structlog.get_logger(__name__)

_HOLD_POLL_MS = 500
"""While a batch is held, poll this often so the group keeps the consumer."""


class StreamRuntime:
    """Runs one :class:`Handler` on one consumer until stopped."""

    def __init__(
        self,
        settings: Settings,
        config: StreamConfig,
        handler: Handler,
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.handler = handler
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.metrics = RuntimeMetrics(config.name, self.registry)
        self.stats = RunStats()
        self._rebalance = RebalanceTracker()
        self._failures = 0
        self._batch_failures: dict[frozenset[tuple[TopicPartition, int]], int] = {}
        self._stop = threading.Event()  # run's own, once it runs

    def run(
        self,
        stop: threading.Event,
        *,
        max_batches: int | None = None,
        idle_exit_s: float | None = None,
        on_open: Callable[[ExitStack], None] | None = None,
    ) -> RunStats:
        """Process batches until ``stop`` is set, ``max_batches`` are done, or nothing arrived for
        ``idle_exit_s`` (counted from the last batch or partition assignment). The batch in hand
        when ``stop`` is set is finished and committed. Every resource, ``on_open``'s included,
        is released through one ExitStack."""
        with ExitStack() as stack:
            self._stop = stop
            self._open(stack)
            if on_open is not None:
                on_open(stack)
            log.info(
                f"{self.config.name}_started",
                group=self.config.group_id,
                topics=list(self.config.topics),
                guarantee=self.config.guarantee.value,
            )
            idle_since = time.monotonic()
            while not stop.is_set():
                self._checkpoint.check()  # fenced, or a client thread gone: StreamHalted
                # Only a rebalance during this batch's collection or processing concerns it.
                self._rebalance.revoked.clear()
                batch = collect(
                    self._consumer,
                    max_records=self.config.max_records,
                    timeout_ms=self.config.batch_timeout_ms,
                    stop=stop,
                    max_bytes=self.config.max_bytes,
                )
                if not batch:
                    self.handler.idle()
                    # Joining the group takes a while (a dead member's partitions wait for its
                    # session to expire): idleness counts from the last assignment, never before
                    # the first.
                    idle_since = max(idle_since, self._rebalance.assigned_at)
                    joined = self._rebalance.assigned_at > float("-inf")
                    if (
                        idle_exit_s is not None
                        and joined
                        and time.monotonic() - idle_since >= idle_exit_s
                    ):
                        break
                    continue
                self._step(batch, stop)
                idle_since = time.monotonic()
                if max_batches is not None and self.stats.batches >= max_batches:
                    break
        log.info(f"{self.config.name}_stopped", **vars(self.stats))
        return self.stats

    def assignment(self) -> set[TopicPartition]:
        """The partitions this stream holds now (none before it has started)."""
        consumer = getattr(self, "_consumer", None)
        return set(consumer.assignment()) if consumer is not None else set()

    def backlog(self) -> int:
        """Records after the current position on the partitions held now (0 before start)."""
        consumer = getattr(self, "_consumer", None)
        return backlog(consumer) if consumer is not None else 0

    def _open(self, stack: ExitStack) -> None:
        c = self.config
        server = serve_metrics(self.registry, c.metrics_host, c.metrics_port)
        if server is not None:
            stack.callback(server.shutdown)
        self._consumer: KafkaConsumer = kafka_clients.consumer(
            self.settings,
            group_id=c.group_id,
            max_poll_records=c.max_records,
            session_timeout_ms=c.session_timeout_ms,
            fetch_min_bytes=self.settings.kafka.stream_fetch_min_bytes,
            fetch_max_wait_ms=self.settings.kafka.stream_fetch_max_wait_ms,
            **c.consumer_options,
        )
        stack.callback(clients.close_consumer, self._consumer)
        self._consumer.subscribe(list(c.topics), listener=self._rebalance)
        self._checkpoint = open_checkpoint(
            self.settings, self._consumer, c.guarantee, c.transactional_id
        )
        stack.callback(self._checkpoint.close)

    def _step(self, batch: Batch, stop: threading.Event) -> None:
        """Handle one batch and commit it, or rewind.

        Order: (1) a batch collected across a rebalance is dropped (some of its records may now
        belong to another consumer); (2) the handler turns it into outputs, holding it with
        backoff while it raises DependencyDownError; (3) the checkpoint publishes the outputs and
        commits the offsets together (exactly-once) or in that order (at-least-once); (4) only
        then the handler's ``committed`` hook runs. Whenever (1)-(3) does not end in a commit,
        every assigned partition is rewound to its committed offset. A batch whose handling
        raises is retried; when it fails ``failures_before_isolation`` times it is bisected
        until the records at fault are dead-lettered (``internal_error``), and the rest goes on.
        """
        if self._rebalance.revoked:
            log.info(f"{self.config.name}_batch_dropped_after_rebalance", records=len(batch))
            self._rewind()
            return
        started = time.monotonic()
        try:
            handled = self._attempt(batch, stop)
        except DependencyDownError as exc:  # held long enough: the input is the suspect
            self._isolate(batch, exc, stop)
            return
        except KafkaError:
            raise  # the broker, not a record: the process stops and its restart re-reads
        except Exception as exc:
            self._failed(batch, exc, stop)
            return
        if handled is None:
            self._rewind()
            return
        batch, outputs = handled
        if self._commit(batch, outputs, started, stop):
            self._batch_failures = {}
            self.handler.committed(batch, outputs, time.monotonic() - started)

    def _commit(
        self, batch: Batch, outputs: Sequence[Output], started: float, stop: threading.Event
    ) -> bool:
        """Commit ``outputs`` with ``batch``'s offsets; on failure rewind, back off, say False."""
        try:
            self._checkpoint.commit(outputs, batch.next_offsets())
        except BatchCommitError as exc:
            self._failures += 1
            self.stats.aborted_batches += 1
            self.metrics.aborted_batches.inc()
            delay = backoff_delay(self._failures, 0.5, self.config.backoff_max_s)
            event = "commit_outcome_unknown" if exc.outcome_unknown else "batch_aborted"
            log.warning(
                f"{self.config.name}_{event}",
                error=str(exc),
                records=len(batch),
                retry_in_s=round(delay, 2),
            )
            self._rewind()
            stop.wait(delay)
            return False
        self._failures = 0
        seconds = time.monotonic() - started
        self.stats.batches += 1
        self.stats.records += len(batch)
        self.metrics.batch_committed(len(batch), seconds)
        self._record_lag(batch)
        return True

    def _failed(self, batch: Batch, exc: Exception, stop: threading.Event) -> None:
        """A batch's handling raised: retry it (rewind, back off), and once it has failed
        ``failures_before_isolation`` times on the same offsets, isolate the records at fault."""
        key = frozenset(batch.first_offsets().items())
        count = self._batch_failures.get(key, 0) + 1
        self._batch_failures = {key: count}  # only the batch in hand is remembered
        if count < self.config.failures_before_isolation:
            delay = backoff_delay(count, 0.5, self.config.backoff_max_s)
            log.warning(
                f"{self.config.name}_batch_failed",
                error=type(exc).__name__,
                attempt=count,
                records=len(batch),
                retry_in_s=round(delay, 2),
                raised_at=where_raised(exc),
            )
            self._rewind()
            stop.wait(delay)
            return
        self._batch_failures = {}
        self._isolate(batch, exc, stop)

    def _isolate(self, batch: Batch, exc: Exception, stop: threading.Event) -> bool:
        """Bisect ``batch``: commit each half that goes through, recurse into each that fails,
        and dead-letter a single record that fails. False when the stream must rewind (stop,
        a rebalance, a failed commit)."""
        started = time.monotonic()
        if len(batch) == 1:
            return self._set_aside(batch, exc, started, stop)
        for half in batch.halves():
            try:
                handled = self._attempt(half, stop)
            except KafkaError:
                raise
            except Exception as failure:
                if not self._isolate(half, failure, stop):
                    return False
                continue
            if handled is None or self._rebalance.revoked:
                self._rewind()
                return False
            half, outputs = handled
            if not self._commit(half, outputs, started, stop):
                return False
            self.handler.committed(half, outputs, time.monotonic() - started)
        return True

    def _set_aside(
        self, batch: Batch, exc: Exception, started: float, stop: threading.Event
    ) -> bool:
        """Dead-letter the one record of ``batch`` whose handling keeps failing."""
        (record,) = batch.records
        if isinstance(exc, DependencyDownError):
            reason = exc.reason
            detail = f"{exc.reason_text}; the record was set aside so the rest could go on"
        else:
            reason = "internal_error"
            detail = (
                f"handling this record raised {type(exc).__name__} every time; it was set "
                "aside so the rest could go on (the error is in the service's log)"
            )
        log.error(
            f"{self.config.name}_record_set_aside",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=reason,
            error=type(exc).__name__,
            raised_at=where_raised(exc),
        )
        letter = dead_letter(record, reason, detail, self.settings)
        if not self._commit(batch, [letter], started, stop):
            return False
        self.metrics.set_aside.labels(reason).inc()
        self.handler.set_aside(record, reason)
        return True

    def _attempt(
        self, batch: Batch, stop: threading.Event
    ) -> tuple[Batch, Sequence[Output]] | None:
        """The batch's outputs; while the handler raises DependencyDownError, pause, back off and
        try again. None when the batch is given back (by the handler, by stop, or revoked whole)."""
        attempt, recovered = 0, False
        try:
            while True:
                try:
                    outputs = self.handler.handle(batch)
                    recovered = attempt > 0
                    return None if outputs is None else (batch, outputs)
                except DependencyDownError as exc:
                    attempt += 1
                    if exc.suspect_input and attempt >= self.config.failures_before_isolation:
                        raise
                    if attempt == 1:
                        self.metrics.paused.set(1)
                    self.handler.held(attempt, exc)
                    delay = backoff_delay(
                        attempt,
                        self.config.backoff_initial_s,
                        self.config.backoff_max_s,
                        exc.retry_after,
                    )
                    log.warning(
                        f"{self.config.name}_batch_held",
                        error=str(exc),
                        attempt=attempt,
                        retry_in_s=round(delay, 2),
                        records=len(batch),
                    )
                    batch = self._hold(batch, delay, stop)
                    if stop.is_set() or not batch:
                        log.info(
                            f"{self.config.name}_batch_left_uncommitted",
                            records=len(batch),
                            stopping=stop.is_set(),
                        )
                        return None
        finally:
            if attempt:
                self._consumer.resume(*self._consumer.paused())
                self.metrics.paused.set(0)
            if recovered:
                self.handler.resumed()

    def _hold(self, batch: Batch, delay: float, stop: threading.Event) -> Batch:
        """Wait ``delay`` s with every partition paused, polling so the group keeps us; returns
        the batch less the records of partitions revoked meanwhile."""
        deadline = time.monotonic() + delay
        while not stop.is_set() and (remaining := deadline - time.monotonic()) > 0:
            self._consumer.pause(*self._consumer.assignment())
            polled = self._consumer.poll(
                timeout_ms=max(1, min(_HOLD_POLL_MS, int(remaining * 1000)))
            )
            # Partitions assigned during the poll were not paused yet: put back what they gave.
            for tp, records in polled.items():
                self._consumer.seek(tp, records[0].offset)
            if self._rebalance.revoked:
                batch = batch.without(self._rebalance.revoked)
        return batch

    def _rewind(self) -> None:
        """Seek every assigned partition back to its committed offset (its beginning when the
        group never committed one). Skipped once the stream is stopping: nothing is consumed or
        committed after that in this process."""
        for tp in self._consumer.assignment():
            committed = committed_offset(self._consumer, tp, self._stop, self.config.name)
            if self._stop.is_set():
                return
            if committed is None:
                self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)

    def _record_lag(self, batch: Batch) -> None:
        for tp, offset in batch.next_offsets().items():
            end = self._consumer.highwater(tp)
            if end is not None:
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                    max(0, end - offset.offset)
                )

"""The stream runtime: what every Kafka consumer of aigis needs, written once.

The worker, the sink and the reviewer each say only what to do with a batch (a :class:`Handler`);
:class:`StreamRuntime` owns the rest: the consumer and its group, micro-batches, rebalances, the
checkpoint (a Kafka transaction, or acknowledged outputs then offsets), holding a batch with
backoff while a dependency is down, and the metrics endpoint.

The invariant: a batch's offsets are committed only together with (or after) everything it
produced. Whenever a batch is not committed (dropped after a rebalance, given back by its
handler, aborted, or held until stop) every partition still assigned is rewound to its committed
offset, so consumption restarts there and never from an in-memory position past uncommitted
records.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import structlog
from kafka import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import TopicPartition
from prometheus_client import CollectorRegistry

from schemas.backoff import backoff_delay
from schemas.errors import AigisError
from schemas.settings import Guarantee, Settings
from worker import kafka as kafka_clients
from worker.runtime.batch import Batch, collect
from worker.runtime.checkpoint import BatchCommitError, Output, open_checkpoint
from worker.runtime.group import RebalanceTracker
from worker.runtime.metrics import RuntimeMetrics, serve_metrics

log = structlog.get_logger(__name__)

_HOLD_POLL_MS = 500
"""While a batch is held, poll this often so the group keeps the consumer."""
_COMMITTED_TRIES = 5
"""Reads of the committed offsets before a rewind gives up (and the process stops)."""


class DependencyDownError(AigisError):
    """Raised by a handler: something the batch needs is down. The runtime pauses the
    partitions, waits with backoff (at least ``retry_after`` seconds) and hands the same batch
    (less any revoked partitions) to the handler again. Nothing is committed meanwhile."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(detail)


class Handler:
    """What a stream does with its batches. Subclasses override ``handle`` and the hooks."""

    def handle(self, batch: Batch) -> Sequence[Output] | None:
        """The outputs of ``batch``, or None to give the batch back uncommitted (it is read
        again). May raise :class:`DependencyDownError`."""
        raise NotImplementedError

    def committed(self, batch: Batch, outputs: Sequence[Output], seconds: float) -> None:
        """Called once the batch and its outputs are committed."""

    def held(self, attempt: int, exc: DependencyDownError) -> None:
        """Called on each failed attempt while a batch is held."""

    def resumed(self) -> None:
        """Called when a held batch went through, or was given up."""

    def idle(self) -> None:
        """Called after a poll that brought nothing."""


@dataclass(frozen=True)
class StreamConfig:
    """Where a stream reads and how it batches and commits."""

    name: str
    """Names the metrics (``aigis_<name>_...``) and log lines."""
    group_id: str
    topics: tuple[str, ...]
    max_records: int
    """A batch closes at this many records..."""
    batch_timeout_ms: int
    """...or this long after its first record, whichever comes first."""
    session_timeout_ms: int
    guarantee: Guarantee = Guarantee.AT_LEAST_ONCE
    transactional_id: str | None = None
    """Exactly-once only: stable per process slot, so a restart fences its predecessor."""
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    """0: no endpoint."""
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 30.0
    consumer_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunStats:
    """Totals since the stream started."""

    batches: int = 0
    records: int = 0
    aborted_batches: int = 0


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
                # Only a rebalance during this batch's collection or processing concerns it.
                self._rebalance.revoked.clear()
                batch = collect(
                    self._consumer,
                    max_records=self.config.max_records,
                    timeout_ms=self.config.batch_timeout_ms,
                    stop=stop,
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
            **c.consumer_options,
        )
        stack.callback(self._consumer.close, autocommit=False)
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
        then the handler's ``committed`` hook runs. Whenever (1)-(3) does not end in a commit, every
        assigned partition is rewound to its committed offset.
        """
        if self._rebalance.revoked:
            log.info(f"{self.config.name}_batch_dropped_after_rebalance", records=len(batch))
            self._rewind()
            return
        started = time.monotonic()
        handled = self._attempt(batch, stop)
        if handled is None:
            self._rewind()
            return
        batch, outputs = handled
        try:
            self._checkpoint.commit(outputs, batch.next_offsets())
        except BatchCommitError as exc:
            self._failures += 1
            self.stats.aborted_batches += 1
            self.metrics.aborted_batches.inc()
            delay = backoff_delay(self._failures, 0.5, self.config.backoff_max_s)
            log.warning(
                f"{self.config.name}_batch_aborted",
                error=str(exc),
                records=len(batch),
                retry_in_s=round(delay, 2),
            )
            self._rewind()
            stop.wait(delay)
            return
        self._failures = 0
        seconds = time.monotonic() - started
        self.stats.batches += 1
        self.stats.records += len(batch)
        self.metrics.batch_size.observe(len(batch))
        self.metrics.batch_seconds.observe(seconds)
        self._record_lag(batch)
        self.handler.committed(batch, outputs, seconds)

    def _attempt(
        self, batch: Batch, stop: threading.Event
    ) -> tuple[Batch, Sequence[Output]] | None:
        """The batch's outputs; while the handler raises DependencyDownError, pause, back off and
        try again. None when the batch is given back (by the handler, by stop, or revoked whole)."""
        attempt = 0
        try:
            while True:
                try:
                    outputs = self.handler.handle(batch)
                    return None if outputs is None else (batch, outputs)
                except DependencyDownError as exc:
                    attempt += 1
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
        group never committed one). A committed offset that cannot be read is never guessed:
        after a few tries the stream stops with an error (a restart reads them afresh)."""
        for tp in self._consumer.assignment():
            committed = self._committed(tp)
            if committed is None:
                self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)

    def _committed(self, tp: TopicPartition) -> int | None:
        for attempt in range(1, _COMMITTED_TRIES + 1):
            try:
                return self._consumer.committed(tp, timeout_ms=5_000)  # type: ignore[no-any-return]
            except KafkaError as exc:
                log.warning(
                    f"{self.config.name}_committed_offsets_unreadable",
                    topic=tp.topic,
                    partition=tp.partition,
                    attempt=attempt,
                    error=repr(exc),
                )
                time.sleep(backoff_delay(attempt, 0.5, 5.0))
        raise kafka_clients.KafkaUnavailable(
            f"could not read the committed offset of {tp.topic}/{tp.partition}; stopping rather "
            "than guessing where to resume (a restart reads it again and loses nothing)"
        )

    def _record_lag(self, batch: Batch) -> None:
        for tp, offset in batch.next_offsets().items():
            end = self._consumer.highwater(tp)
            if end is not None:
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                    max(0, end - offset.offset)
                )

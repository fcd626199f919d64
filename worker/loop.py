"""The worker: consume image events in micro-batches, process them, publish and commit.

One :class:`Worker` is one consumer in the group ``settings.worker.group_id``; run several
(processes or hosts) to share the partitions. Each batch is processed whole and its outputs and
offsets committed together (see :mod:`worker.outputs`); a failure rewinds to the committed offsets,
so the batch is processed again and nothing is lost.
"""

from __future__ import annotations

import random
import threading
import time
from contextlib import ExitStack, closing
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from kafka import KafkaConsumer
from kafka.errors import KafkaError

from schemas.settings import Settings
from serving.client.http import ServingClient, ServingUnavailable
from worker import kafka as kafka_clients
from worker.batch import Batch, collect
from worker.cache import VerdictCache
from worker.fetch import Fetcher
from worker.group import RebalanceTracker, transactional_id
from worker.metrics import WorkerMetrics
from worker.outputs import BatchCommitError, Outputs, open_outputs
from worker.pipeline import DLQ, Pipeline, Processed
from worker.scorer import Scorer

log = structlog.get_logger(__name__)

_HOLD_POLL_MS = 500
"""While paused for the model server, poll this often so the group keeps the worker."""


@dataclass
class WorkerStats:
    """Totals of committed work since the worker started."""

    batches: int = 0
    events: int = 0
    verdicts: int = 0
    dead_letters: int = 0
    cache_hits: int = 0
    aborted_batches: int = 0


def backoff_delay(
    attempt: int, initial: float, maximum: float, retry_after: float | None = None
) -> float:
    """Seconds to wait before try ``attempt`` (1-based): exponential, jittered to half..full,
    capped at ``maximum``, and never shorter than the server's ``retry_after``."""
    ceiling = min(maximum, initial * 2.0 ** (attempt - 1))
    delay = ceiling * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not cryptography
    return max(delay, min(retry_after or 0.0, maximum))


class Worker:
    """One consumer of the images topic. ``run`` blocks until ``stop`` is set (or the limits)."""

    def __init__(
        self,
        settings: Settings,
        *,
        slot: int = 0,
        client: ServingClient | None = None,
        max_batches: int | None = None,
        idle_exit_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.slot = slot
        self.metrics = WorkerMetrics()
        self.stats = WorkerStats()
        self._client = client
        self._max_batches = max_batches
        self._idle_exit_s = idle_exit_s
        self._rebalance = RebalanceTracker()
        self._failures = 0

    def run(self, stop: threading.Event | None = None) -> WorkerStats:
        """Process batches until ``stop`` is set, ``max_batches`` are done, or the topic has been
        idle ``idle_exit_s``. The batch in hand when ``stop`` is set is finished and committed."""
        stop = stop or threading.Event()
        with ExitStack() as stack:
            self._open(stack)
            log.info(
                "worker_started",
                slot=self.slot,
                group=self.settings.worker.group_id,
                guarantee=self.settings.worker.guarantee.value,
            )
            idle_since = time.monotonic()
            while not stop.is_set():
                # A rebalance can happen inside any poll of a batch: only one that happened while
                # this batch was being collected or processed concerns it.
                self._rebalance.revoked.clear()
                batch = collect(
                    self._consumer,
                    max_records=self.settings.worker.batch_size,
                    timeout_ms=self.settings.worker.batch_timeout_ms,
                    stop=stop,
                )
                if not batch:
                    # Joining the group takes a while: idleness counts from the last assignment.
                    idle_since = max(idle_since, self._rebalance.assigned_at)
                    if (
                        self._idle_exit_s is not None
                        and time.monotonic() - idle_since >= self._idle_exit_s
                    ):
                        break
                    continue
                self._handle(batch, stop)
                idle_since = time.monotonic()
                if self._max_batches is not None and self.stats.batches >= self._max_batches:
                    break
        log.info("worker_stopped", slot=self.slot, **vars(self.stats))
        return self.stats

    def _open(self, stack: ExitStack) -> None:
        s = self.settings
        port = s.worker.metrics_port + self.slot if s.worker.metrics_port else 0
        server = self.metrics.serve(s.worker.metrics_host, port)
        if server is not None:
            stack.callback(server.shutdown)
        if self._client is None:
            self._client = stack.enter_context(
                closing(ServingClient(s.serving, key_file=s.serving_key_file))
            )
        cache = VerdictCache(s.redis)
        stack.callback(cache.close)
        fetcher = Fetcher(s.worker)
        stack.callback(fetcher.close)
        self._pipeline = Pipeline(s, fetcher, cache, Scorer(self._client, s.worker))
        self._consumer: KafkaConsumer = kafka_clients.consumer(
            s,
            group_id=s.worker.group_id,
            max_poll_records=s.worker.batch_size,
            session_timeout_ms=s.worker.session_timeout_ms,
        )
        stack.callback(self._consumer.close, autocommit=False)
        self._consumer.subscribe([s.topics.images], listener=self._rebalance)
        self._outputs: Outputs = open_outputs(s, self._consumer, transactional_id(s, self.slot))
        stack.callback(self._outputs.close)

    def _handle(self, batch: Batch, stop: threading.Event) -> None:
        if self._rebalance.revoked:
            # The group changed while this batch was collected: some records may now belong to
            # another worker, and partitions handed back to us were reset to their committed
            # offsets, so their records would come twice. Drop the batch and read it again.
            log.info("batch_dropped_after_rebalance", events=len(batch))
            self._rewind(batch)
            return
        started = time.monotonic()
        scored = self._process(batch, stop)
        if scored is None:
            return
        batch, done = scored
        try:
            self._outputs.commit(done.outputs, batch.next_offsets())
        except BatchCommitError as exc:
            self._failures += 1
            self.stats.aborted_batches += 1
            self.metrics.aborted_batches.inc()
            delay = backoff_delay(self._failures, 0.5, self.settings.worker.serving_backoff_max_s)
            log.warning(
                "batch_aborted", error=str(exc), events=len(batch), retry_in_s=round(delay, 2)
            )
            self._rewind(batch)
            stop.wait(delay)
            return
        self._failures = 0
        self._record(batch, done, time.monotonic() - started)

    def _process(self, batch: Batch, stop: threading.Event) -> tuple[Batch, Processed] | None:
        """Process ``batch``; while the model server is unavailable, pause the partitions, back
        off and try again. None when the batch was given up (stop, or all of it revoked): it is
        uncommitted and will be read again."""
        attempt = 0
        try:
            while True:
                try:
                    return batch, self._pipeline.process(batch)
                except ServingUnavailable as exc:
                    attempt += 1
                    if attempt == 1:
                        self.metrics.serving_unavailable.inc()
                        self.metrics.paused.set(1)
                    delay = backoff_delay(
                        attempt,
                        self.settings.serving.backoff_initial_s,
                        self.settings.worker.serving_backoff_max_s,
                        exc.retry_after,
                    )
                    log.warning(
                        "serving_unavailable",
                        error=str(exc),
                        attempt=attempt,
                        retry_in_s=round(delay, 2),
                        events=len(batch),
                    )
                    batch = self._hold(batch, delay, stop)
                    if stop.is_set() or not batch:
                        log.info(
                            "batch_left_uncommitted", events=len(batch), stopping=stop.is_set()
                        )
                        return None
        finally:
            if attempt:
                self._consumer.resume(*self._consumer.paused())
                self.metrics.paused.set(0)
                if not stop.is_set():
                    log.info("serving_resumed", attempts=attempt)

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

    def _rewind(self, batch: Batch) -> None:
        """Seek every partition of ``batch`` that is still ours back to its committed offset."""
        owned = self._consumer.assignment()
        for tp, first in batch.first_offsets().items():
            if tp not in owned:
                continue
            try:
                committed = self._consumer.committed(tp, timeout_ms=5_000)
            except KafkaError:
                committed = None
            self._consumer.seek(tp, first if committed is None else committed)

    def _record(self, batch: Batch, done: Processed, seconds: float) -> None:
        m, stats = self.metrics, self.stats
        m.batch_size.observe(len(batch))
        m.batch_seconds.observe(seconds)
        m.events_in.labels(self.settings.topics.images).inc(len(batch))
        for outcome, n in done.outcomes.items():
            m.events_out.labels(outcome).inc(n)
        for reason, n in done.dlq_reasons.items():
            m.dlq.labels(reason).inc(n)
        m.cache_hits.inc(done.cache_hits)
        m.cache_misses.inc(done.cache_misses)
        if done.cache_down:
            m.cache_errors.inc()
        if done.cache_misses:
            m.serving_seconds.observe(done.serving_s)
        now = datetime.now(UTC)
        for produced in done.produced_at:
            m.end_to_end_seconds.observe(max(0.0, (now - produced).total_seconds()))
        for tp, offset in batch.next_offsets().items():
            end = self._consumer.highwater(tp)
            if end is not None:
                m.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, end - offset.offset))
        stats.batches += 1
        stats.events += len(batch)
        stats.dead_letters += done.outcomes[DLQ]
        stats.verdicts += len(batch) - done.outcomes[DLQ]
        stats.cache_hits += done.cache_hits
        log.debug(
            "batch_committed",
            events=len(batch),
            seconds=round(seconds, 4),
            cache_hits=done.cache_hits,
            dead_letters=done.outcomes[DLQ],
        )

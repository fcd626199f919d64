"""The worker: image events in micro-batches to verdicts, on the stream runtime.

One :class:`Worker` is one consumer in the group ``settings.worker.group_id``; run several
(processes or hosts) to share the partitions. :class:`ImageHandler` turns a batch into its outputs
(:mod:`worker.pipeline`); :class:`~worker.runtime.app.StreamRuntime` commits them with the offsets
and holds the batch with backoff while the model server is unavailable, so nothing is lost.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError

from schemas.fields import ConsumedRecord
from schemas.settings import Settings
from schemas.uris import redact_uri
from serving.client.http import ServingClient
from serving.client.transport import ServingUnavailable
from worker.cache import VerdictCache
from worker.canary import Canary
from worker.drift import DriftBoard, DriftMonitor
from worker.evidence.stage import EvidenceStage
from worker.fetch import Fetcher
from worker.metrics import WorkerMetrics
from worker.pipeline import Pipeline
from worker.processed import DLQ, Processed
from worker.redis_client import connect as connect_redis
from worker.runtime.app import StreamRuntime
from worker.runtime.batch import Batch
from worker.runtime.checkpoint import Output
from worker.runtime.group import transactional_id
from worker.runtime.handler import DependencyDownError, Handler, StreamConfig
from worker.runtime.slots import metrics_port
from worker.scorer import Scorer, ServerFailedItems

log = structlog.get_logger(__name__)


@dataclass
class WorkerStats:
    """Totals of committed work since the worker started."""

    batches: int = 0
    events: int = 0
    verdicts: int = 0
    dead_letters: int = 0
    cache_hits: int = 0
    aborted_batches: int = 0


class ImageHandler(Handler):
    """Image events to verdicts, review items, pseudo-labels and dead letters."""

    def __init__(self, settings: Settings, metrics: WorkerMetrics, stats: WorkerStats) -> None:
        self._settings = settings
        self._metrics = metrics
        self._stats = stats
        self._done: Processed | None = None
        self.pipeline: Pipeline | None = None
        self.canary: Canary | None = None
        self.drift: DriftBoard | None = None

    def handle(self, batch: Batch) -> Sequence[Output]:
        assert self.pipeline is not None, "the worker opens the pipeline before the first batch"
        self._metrics.loop.beat()
        try:
            self._done = self.pipeline.process(batch)
        except ServerFailedItems as exc:
            raise DependencyDownError(
                str(exc),
                exc.retry_after,
                suspect_input=True,
                reason="unscorable_image",
                reason_text="the model server failed on this image every time it was sent",
            ) from exc
        except ServingUnavailable as exc:
            raise DependencyDownError(str(exc), exc.retry_after) from exc
        return self._done.outputs

    def set_aside(self, record: ConsumedRecord, reason: str) -> None:
        m, stats = self._metrics, self._stats
        m.events_in.labels(record.topic).inc()
        m.events_out.labels(DLQ).inc()
        m.dlq.labels(reason).inc()
        stats.batches += 1
        stats.events += 1
        stats.dead_letters += 1

    def idle(self) -> None:
        self._metrics.loop.beat()

    def held(self, attempt: int, exc: DependencyDownError) -> None:
        # Waiting for the model server is the loop at work: liveness must not restart it.
        self._metrics.loop.beat()
        if attempt == 1:
            self._metrics.serving_unavailable.inc()

    def resumed(self) -> None:
        log.info("serving_resumed")

    def committed(self, batch: Batch, outputs: Sequence[Output], seconds: float) -> None:
        done, m, stats = self._done, self._metrics, self._stats
        assert done is not None
        m.loop.beat()
        m.events_in.labels(self._settings.topics.images).inc(len(batch))
        for outcome, n in done.outcomes.items():
            m.events_out.labels(outcome).inc(n)
        for reason, n in done.dlq_reasons.items():
            m.dlq.labels(reason).inc(n)
        moved = m.verdicts_committed(done.verdicts)
        if self.drift is not None:
            self.drift.publish(moved)
        m.cache_hits.inc(done.cache_hits)
        m.cache_misses.inc(done.cache_misses)
        if done.cache_down:
            m.cache_errors.inc()
        if done.cache_misses:
            m.serving_seconds.observe(done.serving_s)
            m.serving_wait_seconds.observe(done.serving_wait_s)
        m.record_evidence(done)
        m.canary_compared(done.canary)
        if self.canary is not None:
            self.canary.record(done.canary)
        now = datetime.now(UTC)
        for produced in done.produced_at:
            m.end_to_end_seconds.observe(max(0.0, (now - produced).total_seconds()))
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


def stream_config(settings: Settings, slot: int) -> StreamConfig:
    """The image stream of worker process ``slot``: its transactional id and metrics port."""
    w = settings.worker
    return StreamConfig(
        name="worker",
        group_id=w.group_id,
        topics=(settings.topics.images,),
        max_records=w.batch_size,
        batch_timeout_ms=w.batch_timeout_ms,
        session_timeout_ms=w.session_timeout_ms,
        max_bytes=w.max_batch_bytes,
        failures_before_isolation=w.failures_before_isolation,
        guarantee=w.guarantee,
        transactional_id=transactional_id(settings, slot),
        metrics_host=w.metrics_host,
        metrics_port=metrics_port(w.metrics_port, slot),
        backoff_initial_s=settings.serving.backoff_initial_s,
        backoff_max_s=w.serving_backoff_max_s,
    )


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
        self.stats = WorkerStats()
        registry = CollectorRegistry(auto_describe=True)
        w = settings.worker
        drift = DriftMonitor(registry, w.drift_window, w.drift_psi_threshold)
        self.metrics = WorkerMetrics(registry, w.guarantee.value, w.metric_sources, drift)
        self._handler = ImageHandler(settings, self.metrics, self.stats)
        self.runtime = StreamRuntime(
            settings, stream_config(settings, slot), self._handler, registry=registry
        )
        self._client = client
        self._max_batches = max_batches
        self._idle_exit_s = idle_exit_s

    def run(self, stop: threading.Event | None = None) -> WorkerStats:
        """Process batches until ``stop`` is set, ``max_batches`` are done, or the topic has been
        idle ``idle_exit_s``. The batch in hand when ``stop`` is set is finished and committed."""
        self.runtime.run(
            stop or threading.Event(),
            max_batches=self._max_batches,
            idle_exit_s=self._idle_exit_s,
            on_open=self._open,
        )
        self.stats.aborted_batches = self.runtime.stats.aborted_batches
        log.info("worker_totals", slot=self.slot, **vars(self.stats))
        return self.stats

    def _open(self, stack: ExitStack) -> None:
        s = self.settings
        client = self._client
        if client is None:
            client = stack.enter_context(
                closing(ServingClient(s.serving, key_file=s.serving_key_file))
            )
        cache = VerdictCache(s.redis)
        stack.callback(cache.close)
        fetcher = Fetcher(s.fetch, s.worker)
        stack.callback(fetcher.close)
        served = self.metrics.model_served
        scorer = Scorer(client, s.worker, lambda info: served(info.version, info.generators))
        stack.callback(scorer.close)
        evidence = EvidenceStage(s, cache)
        stack.callback(evidence.close)
        self._handler.drift = DriftBoard(
            cache, s.redis.key_prefix, transactional_id(s, self.slot), s.redis.ttl_seconds
        )
        canary = Canary(s, cache, scorer, self.metrics.canary_served)
        self._handler.canary = canary
        self._handler.pipeline = Pipeline(s, fetcher, cache, scorer, evidence, canary)
        check_dependencies(s, client, scorer)


def check_dependencies(settings: Settings, client: ServingClient, scorer: Scorer) -> None:
    """Say once, at start, which dependency is missing and what the worker does meanwhile.

    One ``dependency_unavailable`` warning per missing one, never a traceback, and the worker
    runs on: batches wait while TorchServe or its model is missing (the runtime holds them),
    and events are scored uncached while Redis is down. Kafka needs no check here: the runtime
    has already reached it to join the group.
    """
    serving = settings.serving
    if not client.ready():
        log.warning(
            "dependency_unavailable",
            dependency="torchserve",
            url=serving.inference_url,
            model=serving.model_name,
            problem=f"TorchServe does not answer, or has no ready worker of {serving.model_name!r}",
            meanwhile="events wait, uncommitted, until it does",
            hint="`aigis serve status`; `aigis serve start --model-store models/`",
        )
    else:
        try:
            info = scorer.model()
        except ServingUnavailable as exc:
            log.warning(
                "dependency_unavailable",
                dependency="torchserve",
                url=serving.inference_url,
                model=serving.model_name,
                problem=str(exc),
                meanwhile="events wait, uncommitted, until it does",
            )
        else:
            log.info("serving_ready", model=info.name, version=info.version)
    probe = connect_redis(settings)
    try:
        probe.ping()
    except (RedisError, OSError) as exc:
        log.warning(
            "dependency_unavailable",
            dependency="redis",
            url=redact_uri(settings.redis.url),
            problem=f"{type(exc).__name__}: {exc}",
            meanwhile="events are scored uncached",
            hint="`aigis dev status`, or settings.redis.url",
        )
    finally:
        probe.close()

"""Prometheus metrics of one worker process.

Each :class:`WorkerMetrics` owns its registry, so several workers can live in one process (tests,
benchmarks) without clashing, and each worker process serves its own endpoint. Labels carry
topics, partitions, outcomes and reasons only: never ids, pixels or captions.
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = structlog.get_logger(__name__)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class WorkerMetrics:
    """The counters, histograms and gauges the worker updates."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_in = Counter(
            "aigis_worker_events_in", "Events read from the images topic", ["topic"], registry=r
        )
        self.events_out = Counter(
            "aigis_worker_events_out",
            "Events finished, by outcome (a decision, or dlq)",
            ["outcome"],
            registry=r,
        )
        self.dlq = Counter(
            "aigis_worker_dlq",
            "Events sent to the dead-letter topic, by reason",
            ["reason"],
            registry=r,
        )
        self.cache_hits = Counter("aigis_worker_cache_hits", "Verdict cache hits", registry=r)
        self.cache_misses = Counter("aigis_worker_cache_misses", "Verdict cache misses", registry=r)
        self.cache_errors = Counter(
            "aigis_worker_cache_errors", "Batches scored uncached because Redis failed", registry=r
        )
        self.batch_size = Histogram(
            "aigis_worker_batch_size", "Events per micro-batch", buckets=_BATCH_BUCKETS, registry=r
        )
        self.serving_seconds = Histogram(
            "aigis_worker_serving_seconds",
            "Time to score the cache misses of one batch on the model server",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "aigis_worker_batch_seconds",
            "Time from a batch closing to its outputs being committed",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end_seconds = Histogram(
            "aigis_worker_end_to_end_seconds",
            "Event produced_at to its verdict being committed",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.serving_unavailable = Counter(
            "aigis_worker_serving_unavailable",
            "Times the model server was unavailable and the partitions were paused",
            registry=r,
        )
        self.aborted_batches = Counter(
            "aigis_worker_aborted_batches",
            "Batches whose outputs were aborted and re-read from the committed offsets",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "aigis_worker_consumer_lag",
            "Messages between the committed position and the end of the partition",
            ["topic", "partition"],
            registry=r,
        )
        self.paused = Gauge(
            "aigis_worker_paused", "1 while consumption is paused for the model server", registry=r
        )

    def serve(self, host: str, port: int) -> WSGIServer | None:
        """Start the HTTP endpoint on ``port`` (0: none). Returns the server to shut down."""
        if port == 0:
            return None
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        log.info("metrics_serving", host=host, port=port)
        return server

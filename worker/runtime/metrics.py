"""Metrics every stream has, and the endpoint that serves a stream's registry.

Each stream owns its registry, so several can live in one process (tests, benchmarks) without
clashing. Labels carry topics and partitions only: never ids, pixels or captions.

Counters and histograms export no ``_created`` series: a second series per metric that says when
the process started counting, which ``process_start_time_seconds`` already tells. Importing
this module turns them off for the process (every registry of aigis is made beside it).
"""

from __future__ import annotations

import time
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client import Counter as PromCounter

from schemas.errors import AigisError

log = structlog.get_logger(__name__)

disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class MetricsPortUnavailable(AigisError):  # noqa: N818 - names a state, like KafkaUnavailable
    """The metrics endpoint could not bind its port."""


class RuntimeMetrics:
    """Batches, commits, pauses and lag of one stream, named ``aigis_<name>_...``."""

    def __init__(self, name: str, registry: CollectorRegistry) -> None:
        r, p = registry, f"aigis_{name}"
        self.batch_size = Histogram(
            f"{p}_batch_size", "Records per micro-batch", buckets=_BATCH_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            f"{p}_batch_seconds",
            "Time from a batch closing to its outputs being committed",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.aborted_batches = PromCounter(
            f"{p}_aborted_batches",
            "Batches whose outputs were aborted and re-read from the committed offsets",
            registry=r,
        )
        self.consumer_lag = Gauge(
            f"{p}_consumer_lag",
            "Messages between the committed position and the end of the partition",
            ["topic", "partition"],
            registry=r,
        )
        self.set_aside = PromCounter(
            f"{p}_set_aside",
            "Records dead-lettered because handling them kept failing, by reason",
            ["reason"],
            registry=r,
        )
        self.paused = Gauge(
            f"{p}_paused", "1 while consumption is paused for a dependency that is down", registry=r
        )
        self.last_commit = Gauge(
            f"{p}_last_commit_timestamp_seconds",
            "Unix time of the last committed batch (0 until the first); alert on time() minus it",
            registry=r,
        )

    def batch_committed(self, records: int, seconds: float) -> None:
        """A batch of ``records`` was committed ``seconds`` after it closed."""
        self.batch_size.observe(records)
        self.batch_seconds.observe(seconds)
        self.last_commit.set(time.time())


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> WSGIServer | None:
    """Serve ``registry`` on ``host:port`` (port 0: no endpoint). Returns the server to shut
    down."""
    if port == 0:
        return None
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise MetricsPortUnavailable(
            f"cannot serve metrics on {host}:{port} ({exc}); another process holds the port: "
            "set another one, or 0 for no endpoint (AIGIS_WORKER__METRICS_PORT, to which a "
            "worker adds its slot; AIGIS_STORE__METRICS_PORT for the sink)"
        ) from exc
    log.info("metrics_serving", host=host, port=port)
    return server

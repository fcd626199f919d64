"""Metrics every stream has, and the endpoint that serves a stream's registry.

Each stream owns its registry, so several can live in one process (tests, benchmarks) without
clashing. Labels carry topics and partitions only: never ids, pixels or captions.

Counters and histograms export no ``_created`` series: a second series per metric that says when
the process started counting, which ``process_start_time_seconds`` already tells. Importing
this module turns them off for the process (every registry of aigis is made beside it).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Histogram,
    disable_created_metrics,
    make_wsgi_app,
)
from prometheus_client import Counter as PromCounter
from prometheus_client.exposition import ThreadingWSGIServer

from schemas.errors import AigisError

log = structlog.get_logger(__name__)

disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

HEALTH_PATH = "/healthz"
"""Liveness of the stream's loop, beside ``/metrics`` on the same port."""
_LOOP_SUFFIX = "_loop_timestamp_seconds"
_DEFAULT_MAX_AGE_S = 120.0


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


class LoopHeartbeat:
    """When a stream's loop last went round (a poll, a batch handled, held or committed), as
    ``aigis_<name>_loop_timestamp_seconds``: ``/healthz`` fails when it is too old."""

    def __init__(self, name: str, registry: CollectorRegistry) -> None:
        self._gauge = Gauge(
            f"aigis_{name}{_LOOP_SUFFIX}",
            "Unix time the stream's loop last went round (polled, handled, held or committed)",
            registry=registry,
        )
        self.beat()

    def beat(self) -> None:
        self._gauge.set(time.time())


def loop_age(registry: CollectorRegistry) -> float | None:
    """Seconds since the stalest loop of ``registry`` went round; None when it has none."""
    now = time.time()
    ages = [
        now - sample.value
        for metric in registry.collect()
        if metric.name.endswith(_LOOP_SUFFIX)
        for sample in metric.samples
    ]
    return max(ages) if ages else None


_WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def health_app(registry: CollectorRegistry) -> _WSGIApp:
    """``/healthz[?max_age_s=N]``: 200 while the loop went round in the last N seconds (120 by
    default; a probe sets its own), else 503. Every other path serves the metrics."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != HEALTH_PATH:
            return metrics(environ, start_response)  # type: ignore[no-any-return]  # untyped
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            max_age = float(query.get("max_age_s", [_DEFAULT_MAX_AGE_S])[0])
        except ValueError:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"max_age_s must be a number of seconds\n"]
        age = loop_age(registry)
        alive = age is None or age <= max_age
        body = {"alive": alive, "loop_age_s": None if age is None else round(age, 3)}
        status = "200 OK" if alive else "503 Service Unavailable"
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps(body).encode() + b"\n"]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes are not worth a log line each."""


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> WSGIServer | None:
    """Serve ``registry`` on ``host:port`` (``/metrics``, and ``/healthz`` for probes; port 0:
    no endpoint). Returns the server to shut down."""
    if port == 0:
        return None

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    try:
        server = make_server(host, port, health_app(registry), Server, handler_class=_QuietHandler)
    except OSError as exc:
        raise MetricsPortUnavailable(
            f"cannot serve metrics on {host}:{port} ({exc}); another process holds the port: "
            "set another one, or 0 for no endpoint (AIGIS_WORKER__METRICS_PORT, to which a "
            "worker adds its slot; AIGIS_STORE__METRICS_PORT for the sink)"
        ) from exc
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics_serving", host=host, port=port)
    return server

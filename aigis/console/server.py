"""``aigis review serve``: the web pages, the queue's feed from Kafka and the outbox publisher in
one process, unwound through one ExitStack.

SIGTERM or Ctrl+C stops the web server (requests in flight finish), then the feed finishes and
commits its batch and the publisher its round. Everything the console knows is in its database,
so a restart, or a second replica on the same PostgreSQL database, loses nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import structlog
import uvicorn
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from aigis.console.db import open_database
from aigis.console.feed import QueueFeed
from aigis.console.images import ImageSource
from aigis.console.metrics import ConsoleMetrics
from aigis.console.outbox import OutboxPublisher
from aigis.console.queue import ReviewQueue
from aigis.console.web import create_app
from schemas.errors import AigisError
from schemas.settings import Settings
from worker.runtime.signals import install_stop_handlers

log = structlog.get_logger(__name__)

_RETRY_S = 5.0


def serve(settings: Settings, host: str, port: int) -> None:
    """Run the console until SIGTERM or Ctrl+C."""
    engine = open_database(settings.review.url_in(settings.state_dir))
    queue = ReviewQueue(engine, settings)
    stop = threading.Event()
    registry = CollectorRegistry(auto_describe=True)
    feed = QueueFeed(settings, queue)
    metrics = ConsoleMetrics(registry, feed.runtime.backlog)
    with ExitStack() as stack:
        stack.callback(engine.dispose)
        images = ImageSource(settings)
        stack.callback(images.close)
        publisher = OutboxPublisher(engine, settings, metrics)
        threads = [
            threading.Thread(target=_forever, args=(name, run, stop), name=name, daemon=True)
            for name, run in (("review-feed", feed.run), ("review-outbox", publisher.run))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            stack.callback(thread.join, timeout=30)
        stack.callback(stop.set)
        install_stop_handlers(stop)
        app = create_app(settings, queue, images, metrics, registry)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            server_header=False,
            limit_concurrency=64,
            timeout_keep_alive=5,
        )
        log.info(
            "review_console_started",
            url=f"http://{host}:{port}/",
            database=engine.url.render_as_string(hide_password=True),
        )
        server = _Server(config)
        threading.Thread(target=_exit_on, args=(stop, server), daemon=True).start()
        server.run()
    log.info("review_console_stopped", queued=feed.added)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling (it re-raises the signal once stopped, which
    would skip our clean-up): the stop handlers of every aigis process set ``stop`` instead."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _exit_on(stop: threading.Event, server: uvicorn.Server) -> None:
    stop.wait()
    server.should_exit = True


def _forever(name: str, run: Callable[[threading.Event], None], stop: threading.Event) -> None:
    """Run ``run(stop)`` until ``stop``; an outage (Kafka down at start, say) is retried."""
    while not stop.is_set():
        try:
            run(stop)
        except (AigisError, KafkaError) as exc:
            log.warning(f"{name}_failed", error=type(exc).__name__, retry_in_s=_RETRY_S)
            stop.wait(_RETRY_S)
        except Exception as exc:
            log.error(f"{name}_failed", error=type(exc).__name__, retry_in_s=_RETRY_S)
            stop.wait(_RETRY_S)

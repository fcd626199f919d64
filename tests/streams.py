"""Helpers for tests and benchmarks of the worker: publish events, run workers, read what they
wrote. Real clients only; nothing here stands in for Kafka, Redis or TorchServe."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from schemas import ImageEvent, encode
from schemas.settings import Settings, WorkerSettings
from serving.client.http import ServingClient
from worker.loop import Worker, WorkerStats
from worker.publish import publish
from worker.tail import tail


class CountingClient(ServingClient):
    """The real client, counting the requests it makes."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.serving, key_file=settings.serving_key_file)
        self.items_sent = 0

    def predict_many(self, items: Any, **kwargs: Any) -> Any:
        self.items_sent += len(items)
        return super().predict_many(items, **kwargs)

    def predict(self, items: Any, **kwargs: Any) -> Any:
        self.items_sent += len(items)
        return super().predict(items, **kwargs)


def quick_worker(settings: Settings, instance_id: str, **overrides: Any) -> WorkerSettings:
    """Worker settings for a test's own workers: short batch timeouts and sessions, no metrics
    port, a fixed instance id, the served model re-read often; ``overrides`` on top."""
    quick = {
        "batch_timeout_ms": 50,
        "metrics_port": 0,
        "session_timeout_ms": 6_000,
        "instance_id": instance_id,
        "model_refresh_s": 0.5,
    }
    return settings.worker.model_copy(update={**quick, **overrides})


def events_for(images: Sequence[tuple[bytes, str | None]], prefix: str = "ev") -> list[ImageEvent]:
    return [
        ImageEvent.inline(f"{prefix}-{i}", image, caption=caption)
        for i, (image, caption) in enumerate(images)
    ]


def publish_events(settings: Settings, events: Sequence[ImageEvent]) -> list[str]:
    publish(settings, events)
    return [e.event_id for e in events]


def publish_raw(settings: Settings, values: Sequence[bytes]) -> None:
    """Records exactly as given (poison included), keyed by their position."""
    from worker import kafka

    producer = kafka.producer(settings)
    try:
        for i, value in enumerate(values):
            producer.send(settings.topics.images, value=value, key=f"raw-{i}".encode())
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)


def drain(
    settings: Settings, kind: str, *, expect: int, timeout_s: float = 90.0, finished: bool = False
) -> list[Any]:
    """Every committed message of ``kind`` once ``expect`` have arrived and 1.5 s passed with no
    more (so duplicates would show), or whatever arrived within ``timeout_s``. ``finished``: its
    writers have stopped (a worker run to its idle exit), so the topic read to its end is all
    there is, duplicates included, and no quiet time is waited."""
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    quiet_since: float | None = None

    def stop() -> bool:
        nonlocal quiet_since
        if time.monotonic() > deadline:
            return True
        if len(out) >= expect:
            quiet_since = quiet_since or time.monotonic()
            return time.monotonic() - quiet_since > 1.5
        return False

    for item in tail(settings, kind, from_beginning=True, stop=stop, to_end=finished):
        out.append(item.message)
    return out


def run_worker(settings: Settings, **kwargs: Any) -> tuple[Worker, WorkerStats]:
    """Run a worker here until its topic has been idle for 2 s."""
    worker = Worker(settings, idle_exit_s=kwargs.pop("idle_exit_s", 2.0), **kwargs)
    return worker, worker.run()


class WorkerThread:
    """A worker running in a thread, stopped like SIGTERM stops a process."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.worker = Worker(settings, **kwargs)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run(self.stop)
        except BaseException as exc:
            self.error = exc
            raise

    def __enter__(self) -> WorkerThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the worker did not stop within 60 s"


def subprocess_env(settings: Settings) -> dict[str, str]:
    """The environment under which an ``aigis`` subprocess reads ``settings``' topics, group
    and fetch policy (everything else comes from the suite's own environment)."""
    env = {**os.environ, "AIGIS_LOG_FORMAT": "json"}
    for field in type(settings.topics).model_fields:
        env[f"AIGIS_TOPICS__{field.upper()}"] = getattr(settings.topics, field)
    for field in ("group_id", "batch_size", "session_timeout_ms", "instance_id", "metrics_port"):
        env[f"AIGIS_WORKER__{field.upper()}"] = str(getattr(settings.worker, field))
    env["AIGIS_REDIS__KEY_PREFIX"] = settings.redis.key_prefix
    for field, value in settings.fetch.model_dump(mode="json").items():
        env[f"AIGIS_FETCH__{field.upper()}"] = json.dumps(value)
    return env


def raw(event: ImageEvent) -> bytes:
    return encode(event)

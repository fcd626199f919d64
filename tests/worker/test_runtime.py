"""The stream runtime on a real broker: a record that breaks its handler is isolated and
dead-lettered, and every other record of its batch still gets its output exactly once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from schemas import DeadLetter, decode
from schemas.settings import Guarantee, Settings
from worker import kafka
from worker.runtime.app import StreamRuntime
from worker.runtime.batch import Batch
from worker.runtime.checkpoint import Output
from worker.runtime.handler import DependencyDownError, Handler, StreamConfig

pytestmark = pytest.mark.integration


class Echo(Handler):
    """Copies each record to the verdicts topic; a value starting with ``poison`` raises, one
    starting with ``sick`` makes a dependency fail (the way a model server fails on one image)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.calls = 0
        self.set_aside_reasons: list[str] = []

    def handle(self, batch: Batch) -> Sequence[Output]:
        self.calls += 1
        values = [r.value or b"" for r in batch.records]
        if any(v.startswith(b"poison") for v in values):
            raise RuntimeError("a bug this record triggers")
        if any(v.startswith(b"sick") for v in values):
            raise DependencyDownError(
                "the server failed", 0.01, suspect_input=True, reason="unscorable_image"
            )
        return [Output(self.settings.topics.verdicts, r.key, r.value or b"") for r in batch.records]

    def set_aside(self, record: object, reason: str) -> None:
        self.set_aside_reasons.append(reason)


def publish(settings: Settings, values: list[bytes]) -> None:
    """``values`` on the images topic, keyed by their position."""
    producer = kafka.producer(settings)
    for i, value in enumerate(values):
        producer.send(settings.topics.images, key=f"k{i}".encode(), value=value)
    producer.flush(timeout=30)
    producer.close(timeout=5)


def run_echo(settings: Settings, values: list[bytes]) -> Echo:
    publish(settings, values)
    handler = Echo(settings)
    config = StreamConfig(
        name="echo",
        group_id=settings.worker.group_id,
        topics=(settings.topics.images,),
        max_records=16,
        batch_timeout_ms=200,
        session_timeout_ms=10_000,
        failures_before_isolation=2,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
    )
    StreamRuntime(settings, config, handler).run(threading.Event(), idle_exit_s=2.0)
    return handler


def test_a_record_that_breaks_the_handler_is_dead_lettered_and_the_rest_go_on(
    isolated_settings: Settings, read_topic: Callable[..., list[Any]]
) -> None:
    good = [f"good-{i}".encode() for i in range(14)]
    values = [*good[:5], b"poison-1", *good[5:10], b"sick-1", *good[10:]]
    handler = run_echo(isolated_settings, values)

    topics = isolated_settings.topics
    # Asking for one more than expected waits out the timeout, so a duplicate would show.
    echoed = sorted(r.value for r in read_topic(topics.verdicts, len(good) + 1, timeout_s=4))
    assert echoed == sorted(good)
    letters = [decode(DeadLetter, r.value) for r in read_topic(topics.dlq, 3, timeout_s=4)]
    by_value = {letter.original_value(): letter for letter in letters}
    assert set(by_value) == {b"poison-1", b"sick-1"}
    assert by_value[b"poison-1"].reason == "internal_error"
    assert "RuntimeError" in by_value[b"poison-1"].detail
    assert "a bug this record triggers" not in by_value[b"poison-1"].detail
    assert by_value[b"sick-1"].reason == "unscorable_image"
    assert sorted(handler.set_aside_reasons) == ["internal_error", "unscorable_image"]


class Outage(Handler):
    """Copies each record to the verdicts topic, but while ``down`` is set its dependency is
    down (the way TorchServe is during an outage)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.down = threading.Event()
        self.holding = threading.Event()

    def handle(self, batch: Batch) -> Sequence[Output]:
        if self.down.is_set():
            self.holding.set()
            raise DependencyDownError("the model server is down", 0.05)
        return [Output(self.settings.topics.verdicts, r.key, r.value or b"") for r in batch.records]


@pytest.mark.parametrize("guarantee", list(Guarantee))
def test_a_batch_held_through_a_rebalance_is_read_again_from_the_committed_offsets(
    isolated_settings: Settings, read_topic: Callable[..., list[Any]], guarantee: Guarantee
) -> None:
    """A held batch, a member that joins and leaves (the same consumer gets the partitions back),
    then the dependency returns: every record gets its output exactly once."""
    settings = isolated_settings
    values = [f"v{i}".encode() for i in range(40)]
    publish(settings, values)
    handler = Outage(settings)
    handler.down.set()
    config = StreamConfig(
        name="outage",
        group_id=settings.worker.group_id,
        topics=(settings.topics.images,),
        max_records=8,
        batch_timeout_ms=100,
        session_timeout_ms=6_000,
        guarantee=guarantee,
        transactional_id=f"{settings.worker.group_id}.test.0",
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
    )
    runtime = StreamRuntime(settings, config, handler)
    stop = threading.Event()
    thread = threading.Thread(target=runtime.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert handler.holding.wait(60), "the first batch was never held"
        # Another member joins (a rebalance while partitions are paused) and leaves again.
        other = kafka.consumer(
            settings, group_id=settings.worker.group_id, topics=[settings.topics.images]
        )
        deadline = time.monotonic() + 60
        while not other.assignment() and time.monotonic() < deadline:
            other.poll(timeout_ms=200)
        assert other.assignment(), "the second member never got a partition"
        other.close(autocommit=False)
        time.sleep(1.0)
        handler.down.clear()
        deadline = time.monotonic() + 60
        while runtime.stats.records < len(values) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(timeout=60)
    echoed = [r.value for r in read_topic(settings.topics.verdicts, len(values) + 1, timeout_s=4)]
    assert sorted(echoed) == sorted(values)

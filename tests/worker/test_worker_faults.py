"""Faults lose nothing: TorchServe or Redis stopped for a while, workers joining and leaving."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aigis.devstack.kafka_broker import KafkaBroker
from aigis.devstack.redis_server import RedisServer
from schemas.settings import Settings
from tests.streams import WorkerThread, drain, events_for, publish_events, run_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Images = list[tuple[bytes, str | None]]


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


def assert_exactly_once(settings: Settings, ids: list[str]) -> None:
    verdicts = drain(settings, "verdicts", expect=len(ids), finished=True)
    assert sorted(v.event_id for v in verdicts) == sorted(ids)


def test_torchserve_stopped_for_a_while_loses_nothing(
    worker_settings: Settings, smoke_images: Images, torchserve: object
) -> None:
    server, store = torchserve.server, torchserve.store  # type: ignore[attr-defined]
    ids = publish_events(worker_settings, events_for(smoke_images[:20], "outage"))
    server.stop()
    try:
        with WorkerThread(worker_settings) as run:
            metrics = run.worker.metrics.registry
            wait_for(lambda: metrics.get_sample_value("aigis_worker_paused") == 1, 60, "a pause")
            time.sleep(2)
            assert run.worker.stats.batches == 0, "committed while TorchServe was down"
            server.start(store)
            wait_for(lambda: run.worker.stats.verdicts == len(ids), 120, "every verdict")
            assert metrics.get_sample_value("aigis_worker_paused") == 0
            assert metrics.get_sample_value("aigis_worker_serving_unavailable_total") == 1
        assert run.error is None
    finally:
        if server.pid() is None:
            server.start(store)
    assert_exactly_once(worker_settings, ids)


def test_with_redis_stopped_events_are_still_scored(
    worker_settings: Settings, smoke_images: Images
) -> None:
    redis = RedisServer(worker_settings)
    pid = redis.pid()
    assert pid is not None, "this suite's Redis is not one `aigis dev up` started"
    os.kill(pid, signal.SIGTERM)
    try:
        wait_for(lambda: redis.pid() is None, 30, "Redis to stop")
        ids = publish_events(worker_settings, events_for(smoke_images[20:32], "noredis"))
        worker, stats = run_worker(worker_settings)
        assert stats.verdicts == len(ids)
        assert worker.metrics.registry.get_sample_value("aigis_worker_cache_errors_total") >= 1
    finally:
        dev_up()
    verdicts = drain(worker_settings, "verdicts", expect=len(ids), finished=True)
    assert sorted(v.event_id for v in verdicts) == sorted(ids)
    assert not any(v.cached for v in verdicts)


def dev_up() -> None:
    """Start again whatever of this suite's Kafka and Redis is stopped."""
    aigis = Path(sys.executable).parent / "aigis"
    subprocess.run([str(aigis), "dev", "up"], check=True, capture_output=True, timeout=300)


def test_a_broker_restart_mid_stream_loses_and_duplicates_nothing(
    worker_settings: Settings, smoke_images: Images
) -> None:
    ids = publish_events(worker_settings, events_for(smoke_images[:24], "before"))
    broker = KafkaBroker(worker_settings)
    with WorkerThread(worker_settings) as run:
        wait_for(lambda: run.worker.stats.verdicts > 0, 60, "the first verdicts")
        try:
            broker.stop()
        finally:
            dev_up()
        ids += publish_events(worker_settings, events_for(smoke_images[24:36], "after"))
        wait_for(lambda: run.worker.stats.verdicts >= len(ids), 180, "every verdict")
    assert run.error is None
    assert_exactly_once(worker_settings, ids)


def test_two_workers_share_the_partitions_and_rebalances_lose_nothing(
    worker_settings: Settings, smoke_images: Images
) -> None:
    images = smoke_images[32:72]
    ids = publish_events(worker_settings, events_for(images[:15], "r1"))
    with WorkerThread(worker_settings, slot=0) as first:
        wait_for(lambda: first.worker.stats.verdicts > 0, 60, "the first worker to start")
        with WorkerThread(worker_settings, slot=1) as second:
            # The second worker joins: the group rebalances and it takes a partition.
            wait_for(lambda: second.worker.stats.batches > 0 or _owns(second), 60, "the join")
            ids += publish_events(worker_settings, events_for(images[15:30], "r2"))
            wait_for(
                lambda: first.worker.stats.verdicts + second.worker.stats.verdicts >= len(ids),
                120,
                "both workers to finish",
            )
        # The second worker left: its partitions come back to the first.
        ids += publish_events(worker_settings, events_for(images[30:40], "r3"))
        wait_for(
            lambda: first.worker.stats.verdicts + second.worker.stats.verdicts >= len(ids),
            120,
            "the first worker to take over",
        )
    assert first.error is None
    assert second.error is None
    assert second.worker.stats.events > 0, "the second worker never got a partition"
    assert_exactly_once(worker_settings, ids)


def _owns(run: WorkerThread) -> bool:
    return bool(run.worker.runtime.assignment())

"""Transactional ids on one host, with real processes and the real Kafka.

Two ``aigis worker`` processes started with the same settings claim two slots, so two
transactional ids and two metrics ports, and share the work without fencing each other. A worker
whose transactional id another producer takes stops with an error naming the id, instead of
living on with partitions it cannot commit.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas.settings import Settings
from tests.streams import drain, events_for, publish_events, run_worker, subprocess_env
from worker import kafka

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AIGIS = str(Path(sys.executable).parent / "aigis")
Images = list[tuple[bytes, str | None]]


def free_port_pair() -> int:
    """A port ``p`` with ``p + 1`` free as well (slots 0 and 1 serve metrics on both)."""
    for _ in range(50):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise AssertionError("no two adjacent free ports")


def events_in(port: int) -> float:
    """``aigis_worker_events_in_total`` served on ``port`` (0 before the first batch)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("aigis_worker_events_in_total{")
    )


def log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for text in path.read_text().splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue  # a line from outside the logging set-up
        if isinstance(line, dict) and "event" in line:
            lines.append(line)
    return lines


def holds_partitions(path: Path) -> bool:
    """Whether the latest assignment this worker logged is not empty."""
    assigned = [line for line in log_lines(path) if line["event"] == "partitions_assigned"]
    return bool(assigned) and bool(assigned[-1]["partitions"])


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.2)


def test_two_workers_on_one_host_take_two_slots_and_never_fence_each_other(
    worker_settings: Settings, smoke_images: Images, tmp_path: Path
) -> None:
    port = free_port_pair()
    worker = worker_settings.worker.model_copy(update={"metrics_port": port})
    settings = worker_settings.model_copy(update={"worker": worker})
    env = subprocess_env(settings)  # the same settings for both: no slot, one metrics port
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    procs = [subprocess.Popen([AIGIS, "worker"], env=env, stderr=log.open("w")) for log in logs]
    try:
        wait_for(lambda: all(holds_partitions(log) for log in logs), 120, "both to get partitions")
        ids = publish_events(settings, events_for(smoke_images[:40], "pair"))
        verdicts = drain(settings, "verdicts", expect=len(ids), timeout_s=180)
        assert sorted(v.event_id for v in verdicts) == sorted(ids)
        # Both did part of the work, each serving its metrics on its own slot's port.
        assert events_in(port) > 0
        assert events_in(port + 1) > 0
        assert events_in(port) + events_in(port + 1) == len(ids)
        assert [proc.poll() for proc in procs] == [None, None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        assert [proc.wait(timeout=60) for proc in procs] == [0, 0]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    claimed = [
        line for log in logs for line in log_lines(log) if line["event"] == "worker_slot_claimed"
    ]
    group = settings.worker.group_id
    assert sorted(line["slot"] for line in claimed) == [0, 1]
    assert sorted(line["transactional_id"] for line in claimed) == [
        f"{group}.test.0",
        f"{group}.test.1",
    ]
    assert "worker_failed" not in {line["event"] for log in logs for line in log_lines(log)}
    # Neither producer was fenced, not even for a moment that the worker got over.
    text = "".join(log.read_text() for log in logs)
    assert "Fenced" not in text
    assert "InvalidProducerEpoch" not in text


def test_a_worker_whose_transactional_id_is_taken_exits_naming_it(
    worker_settings: Settings, smoke_images: Images, tmp_path: Path
) -> None:
    env = subprocess_env(worker_settings)
    ids = publish_events(worker_settings, events_for(smoke_images[:4], "before"))
    log = tmp_path / "worker.log"
    proc = subprocess.Popen([AIGIS, "worker"], env=env, stderr=log.open("w"))
    taken = f"{worker_settings.worker.group_id}.test.0"
    try:
        assert len(drain(worker_settings, "verdicts", expect=len(ids))) == len(ids)
        # Another producer with the worker's transactional id: its init_transactions fences the
        # worker's producer, whose next transaction is refused.
        intruder = kafka.producer(worker_settings, transactional_id=taken)
        try:
            ids += publish_events(worker_settings, events_for(smoke_images[4:12], "after"))
            assert proc.wait(timeout=120) == 1
        finally:
            intruder.close(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    failed = [line for line in log_lines(log) if line["event"] == "worker_failed"]
    assert failed, log.read_text()[-4000:]
    assert failed[0]["kind"] == "ProducerFenced"
    assert f"{taken!r} is held by another process" in failed[0]["error"]
    # It left the group: a new worker takes its partitions and every event has one verdict.
    run_worker(worker_settings)
    verdicts = drain(worker_settings, "verdicts", expect=len(ids), finished=True)
    assert sorted(v.event_id for v in verdicts) == sorted(ids)

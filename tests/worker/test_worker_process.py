"""``aigis worker`` as processes: kill -9 and restart, SIGTERM, metrics; ``publish`` and ``tail``.

Under exactly-once, a worker killed mid-stream and restarted leaves every event with exactly one
committed verdict: whatever it had not committed is aborted and processed again.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from schemas.settings import Settings
from tests.streams import subprocess_env
from worker import kafka
from worker.tail import partitions

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AIGIS = str(Path(sys.executable).parent / "aigis")


class Committed:
    """Counts committed verdicts as they arrive (read_committed, no consumer group)."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = kafka.consumer(settings, group_id=None)
        self.consumer.assign(partitions(self.consumer, settings.topics.verdicts))
        self.seen = 0

    def count(self) -> int:
        for records in self.consumer.poll(timeout_ms=50).values():
            self.seen += len(records)
        return self.seen


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return ""  # the killed worker's port


def test_kill_9_and_restart_leave_exactly_one_verdict_per_event(
    worker_settings: Settings, smoke_images: list[tuple[bytes, str | None]], tmp_path: Path
) -> None:
    port = free_port()
    worker = worker_settings.worker.model_copy(update={"batch_size": 2, "metrics_port": port})
    settings = worker_settings.model_copy(update={"worker": worker})
    env = subprocess_env(settings)
    folder = tmp_path / "images"
    folder.mkdir()
    count = 120
    for i in range(count):
        # Distinct bytes after the JPEG end marker: every event misses the cache and is scored.
        (folder / f"{i:03}.jpg").write_bytes(smoke_images[i % 30][0] + f"#{i}".encode())
    published = subprocess.run(
        [AIGIS, "publish", str(folder), "--count", str(count), "--caption", "a photo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert f"published {count} events" in published.stdout

    log_file = tmp_path / "worker.log"
    supervisor = subprocess.Popen(
        [AIGIS, "worker", "--processes", "2"], env=env, stderr=log_file.open("w")
    )
    verdicts = Committed(settings)
    try:
        deadline = time.monotonic() + 120
        while verdicts.count() < 4:
            assert time.monotonic() < deadline, "no progress before the kill"
            assert supervisor.poll() is None
        victim = children(supervisor.pid)[0]
        os.kill(victim, signal.SIGKILL)  # mid-stream: its open transaction is left behind
        assert verdicts.count() < count, "the kill came too late"
        # The surviving process serves metrics once it has committed a batch of its own.
        deadline = time.monotonic() + 60
        while not any("aigis_worker_events_in_total" in scrape(p) for p in (port, port + 1)):
            assert time.monotonic() < deadline, "no worker process serves its metrics"
            time.sleep(0.5)
        deadline = time.monotonic() + 180
        while verdicts.count() < count:
            assert time.monotonic() < deadline, "the restarted worker did not finish"
        assert victim not in children(supervisor.pid)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0
    finally:
        verdicts.consumer.close()
        if supervisor.poll() is None:
            # A killed supervisor forwards nothing; its workers notice and stop on their own.
            supervisor.kill()
            supervisor.wait()
    assert "worker_process_died" in log_file.read_text()

    tailed = subprocess.run(
        [AIGIS, "tail", "verdicts", "--json", "--from-beginning", "--idle-exit", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    ids = [json.loads(line)["event_id"] for line in tailed.stdout.splitlines()]
    assert len(ids) == count
    assert len(set(ids)) == count

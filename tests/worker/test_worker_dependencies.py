"""A worker started while its dependencies are missing says so once, at start, and runs on.

Real Kafka (the worker must join its group); TorchServe and Redis are addresses where nothing
listens: loopback ports held by the test and never listening, so connections are refused.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from schemas.settings import Settings
from worker.loop import Worker

pytestmark = pytest.mark.integration


@pytest.fixture
def closed_ports() -> Iterator[tuple[int, int, int]]:
    socks = [socket.socket() for _ in range(3)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))  # held, never listening
        yield tuple(int(s.getsockname()[1]) for s in socks)  # type: ignore[misc]
    finally:
        for sock in socks:
            sock.close()


def _run_briefly(settings: Settings, seconds: float) -> list[dict[str, Any]]:
    stop = threading.Event()
    worker = Worker(settings)
    with capture_logs() as logs:
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not any(
            line["event"] == "worker_started" for line in logs
        ):
            time.sleep(0.1)
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive(), "the worker did not stop"
    return logs


def test_missing_torchserve_and_redis_each_get_one_warning_at_start(
    isolated_settings: Settings, closed_ports: tuple[int, int, int]
) -> None:
    inference, management, redis_port = closed_ports
    s = isolated_settings
    settings = s.model_copy(
        update={
            "serving": s.serving.model_copy(
                update={
                    "inference_url": f"http://127.0.0.1:{inference}",
                    "management_url": f"http://127.0.0.1:{management}",
                }
            ),
            "redis": s.redis.model_copy(
                update={"url": f"redis://user:secret@127.0.0.1:{redis_port}/0"}
            ),
            "worker": s.worker.model_copy(update={"metrics_port": 0, "instance_id": "deps"}),
        }
    )

    logs = _run_briefly(settings, seconds=30)

    events = [line["event"] for line in logs]
    assert "worker_started" in events, events
    missing = [line for line in logs if line["event"] == "dependency_unavailable"]
    assert [line["dependency"] for line in missing] == ["torchserve", "redis"], missing
    assert all(line["log_level"] == "warning" for line in missing)
    assert all("exc_info" not in line for line in missing)
    assert str(inference) in missing[0]["url"]
    assert "secret" not in str(missing[1])
    assert events.index("dependency_unavailable") < events.index("worker_started")
    assert "worker_failed" not in events
    assert "serving_request_retry" not in events

"""`aigis publish` with no broker: it fails within seconds, with one line and no library noise.

No service is needed: the bootstrap servers point at a loopback port that is bound and never
listens, so every connection is refused.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.integration

AIGIS = str(Path(sys.executable).with_name("aigis"))


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # held, never listening: connections are refused
        yield int(sock.getsockname()[1])


def test_publish_without_a_broker_fails_fast_with_one_line(
    closed_port: int, tmp_path: Path
) -> None:
    image = tmp_path / "red.png"
    Image.new("RGB", (32, 32), "red").save(image)
    env = {
        **os.environ,
        "AIGIS_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port}",
        "AIGIS_KAFKA__CONNECT_TIMEOUT_S": "2",
        "AIGIS_LOG_FORMAT": "json",
        "AIGIS_STATE_DIR": str(tmp_path / "state"),
    }
    started = time.monotonic()
    done = subprocess.run(
        [AIGIS, "publish", str(image)], env=env, capture_output=True, text=True, timeout=60
    )
    took = time.monotonic() - started

    assert done.returncode == 1
    assert took < 20, f"publish took {took:.1f} s to give up"
    errors = [line for line in done.stderr.splitlines() if "aigis publish:" in line]
    assert len(errors) == 1, done.stderr
    assert f"127.0.0.1:{closed_port}" in errors[0]
    assert "AIGIS_KAFKA__CONNECT_TIMEOUT_S" in errors[0]
    assert '"logger"' not in done.stderr, "a library logged: " + done.stderr

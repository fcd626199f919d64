"""A supervised worker process stops when its supervisor is killed, instead of living on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

_CHILD = """
import sys, threading
from worker.runtime.signals import stop_with_parent
stop = threading.Event()
stop_with_parent(stop, interval_s=0.1)
stopped = stop.wait(30)
open(sys.argv[1], "w").write("stopped" if stopped else "timed out")
"""

_PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], start_new_session=True)
print(child.pid, flush=True)
time.sleep(60)
"""


def test_a_supervised_worker_stops_when_its_supervisor_is_killed(tmp_path: Path) -> None:
    marker = tmp_path / "child.txt"
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, _CHILD, str(marker)], stdout=subprocess.PIPE, text=True
    )
    child_pid = int(parent.stdout.readline())  # type: ignore[union-attr]
    time.sleep(1.0)  # the child has started watching
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 15
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.read_text() == "stopped"
    assert _gone(child_pid, timeout_s=5)


def _gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False

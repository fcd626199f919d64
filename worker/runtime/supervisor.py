"""A supervisor for several worker processes.

The supervisor starts ``N`` worker processes (the command the caller gives), forwards SIGTERM and
SIGINT to them, restarts one that dies unexpectedly, and exits 0 when every worker stopped cleanly
after a stop request. A second Ctrl+C kills the workers at once (status 130).
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from types import FrameType

import structlog

log = structlog.get_logger(__name__)

_RESTART_DELAY_S = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Waits before restarting a worker that died, by how many times in a row it has died."""
_HEALTHY_AFTER_S = 60.0
"""A worker process that ran this long before dying starts the restart delays afresh."""


def _spawn(command: Callable[[int], list[str]], slot: int) -> subprocess.Popen[bytes]:
    # A new session per child: a terminal's Ctrl+C reaches the supervisor only, which forwards it.
    child = subprocess.Popen(command(slot), start_new_session=True)
    log.info("worker_process_started", slot=slot, pid=child.pid)
    return child


def supervise(processes: int, command: Callable[[int], list[str]]) -> int:
    """Run ``processes`` worker processes (``command(slot)`` each) until stopped; return the
    exit status."""
    stop = threading.Event()
    forced = threading.Event()
    children = {slot: _spawn(command, slot) for slot in range(processes)}
    deaths = dict.fromkeys(children, 0)
    started = dict.fromkeys(children, time.monotonic())
    restart_at: dict[int, float] = {}

    def forward(signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGINT and stop.is_set():
            forced.set()
            for child in children.values():
                child.kill()
            return
        stop.set()
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while not stop.is_set():
        for slot, child in list(children.items()):
            code = child.poll()
            if code is not None and slot not in restart_at and not stop.is_set():
                if time.monotonic() - started[slot] >= _HEALTHY_AFTER_S:
                    deaths[slot] = 0
                delay = _RESTART_DELAY_S[min(deaths[slot], len(_RESTART_DELAY_S) - 1)]
                deaths[slot] += 1
                restart_at[slot] = time.monotonic() + delay
                log.error(
                    "worker_process_died", slot=slot, pid=child.pid, code=code, restart_in_s=delay
                )
        for slot, when in list(restart_at.items()):
            if time.monotonic() >= when and not stop.is_set():
                del restart_at[slot]
                children[slot] = _spawn(command, slot)
                started[slot] = time.monotonic()
        stop.wait(0.5)
    codes = {slot: child.wait() for slot, child in children.items()}
    log.info("workers_stopped", codes=codes)
    if forced.is_set():
        return 130
    # A child that died of the forwarded SIGTERM was still starting (its stop handler not yet
    # installed, so nothing consumed): that is a clean stop too.
    return 0 if all(code in (0, -signal.SIGTERM) for code in codes.values()) else 1

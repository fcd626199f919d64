"""Stop requests: one behaviour for every process of aigis.

SIGTERM or a first Ctrl+C sets a ``stop`` event: the stream in hand finishes its batch, commits and
unwinds its resources. A second Ctrl+C exits at once with status 130 (nothing committed since the
last batch is lost: it is read again).
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

import structlog

log = structlog.get_logger(__name__)


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop``; a second SIGINT exits at once with status 130."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGINT and stop.is_set():
            os._exit(130)
        log.info("stop_requested", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def stop_with_parent(stop: threading.Event, interval_s: float = 1.0) -> None:
    """Set ``stop`` once this process's parent is gone (a supervisor killed with SIGKILL cannot
    forward anything; its workers must not live on as orphans)."""
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(interval_s):
            if os.getppid() != parent:
                log.warning("supervisor_gone", parent=parent)
                stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()

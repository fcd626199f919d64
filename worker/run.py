"""Entry points that run workers in this process or in several."""

from __future__ import annotations

import threading

from aigis.logs import configure_logging
from aigis.settings import load_settings
from worker.loop import Worker
from worker.supervisor import install_stop_handlers, stop_with_parent, supervise


def run_one(slot: int = 0, *, supervised: bool = False) -> int:
    """Run one worker here until SIGTERM or Ctrl+C (or, ``supervised``, until the supervisor is
    gone); return the exit status (0: clean stop)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    stop = threading.Event()
    install_stop_handlers(stop)
    if supervised:
        stop_with_parent(stop)
    Worker(settings, slot=slot).run(stop)
    return 0


def run(processes: int = 1) -> int:
    """Run ``processes`` workers: in this process for one, under a supervisor for more."""
    if processes == 1:
        return run_one(0)
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return supervise(processes)

"""Entry points that run workers in this process or in several.

``python -m aigis.run --slot K`` is one worker process, as ``aigis worker -p N`` starts it.
"""

from __future__ import annotations

import argparse
import sys
import threading

from aigis.logs import configure_logging
from schemas.settings import load_settings
from worker.loop import Worker
from worker.runtime.signals import install_stop_handlers, stop_with_parent
from worker.runtime.supervisor import supervise


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


def worker_command(slot: int) -> list[str]:
    """The command line of worker process ``slot`` under the supervisor."""
    return [sys.executable, "-m", "aigis.run", "--slot", str(slot), "--supervised"]


def run(processes: int = 1) -> int:
    """Run ``processes`` workers: in this process for one, under a supervisor for more."""
    if processes == 1:
        return run_one(0)
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return supervise(processes, worker_command)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m aigis.run", description=__doc__)
    parser.add_argument("--slot", type=int, default=0, help="process slot (0-based)")
    parser.add_argument(
        "--supervised", action="store_true", help="stop when the parent process is gone"
    )
    args = parser.parse_args()
    raise SystemExit(run_one(args.slot, supervised=args.supervised))


if __name__ == "__main__":
    main()

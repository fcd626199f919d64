"""Entry points that run workers in this process or in several.

``python -m aigis.run --slot K`` is one worker process, as ``aigis worker -p N`` starts it.
"""

from __future__ import annotations

import argparse
import sys
import threading

import structlog

from aigis.logs import configure_logging
from schemas.errors import AigisError
from schemas.settings import load_settings
from worker.loop import Worker, stream_config
from worker.runtime.signals import install_stop_handlers, stop_with_parent
from worker.runtime.slots import SlotUnavailable, claim_slot, slot_directory
from worker.runtime.supervisor import supervise

log = structlog.get_logger(__name__)


def run_one(slot: int | None = None, *, supervised: bool = False) -> int:
    """Run one worker here until SIGTERM or Ctrl+C (or, ``supervised``, until the supervisor is
    gone); return the exit status: 0 after a clean stop, 1 when the worker stopped on an error
    (logged as ``worker_failed``: a fenced producer, a dead Kafka client, a slot it cannot have).

    The worker holds its slot on this host for as long as it runs: ``worker.slot`` when set,
    else ``slot`` when it is free, else the first free one (:mod:`worker.runtime.slots`).
    """
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    stop = threading.Event()
    install_stop_handlers(stop)
    if supervised:
        stop_with_parent(stop)
    w = settings.worker
    try:
        with claim_slot(
            slot_directory(settings.state_dir), w.group_id, preferred=slot, fixed=w.slot
        ) as claimed:
            config = stream_config(settings, claimed)
            log.info(
                "worker_slot_claimed",
                slot=claimed,
                transactional_id=config.transactional_id,
                metrics_port=config.metrics_port,
            )
            Worker(settings, slot=claimed).run(stop)
    except AigisError as exc:
        log.error("worker_failed", error=str(exc), kind=type(exc).__name__)
        return 1
    return 0


def worker_command(slot: int) -> list[str]:
    """The command line of worker process ``slot`` under the supervisor."""
    return [sys.executable, "-m", "aigis.run", "--slot", str(slot), "--supervised"]


def run(processes: int = 1) -> int:
    """Run ``processes`` workers: in this process for one, under a supervisor for more."""
    if processes == 1:
        return run_one()
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    if settings.worker.slot is not None:
        raise SlotUnavailable(
            f"AIGIS_WORKER__SLOT fixes the slot of one process; {processes} processes cannot "
            "share it: unset it (each process then claims a free slot) or run one process"
        )
    return supervise(processes, worker_command)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m aigis.run", description=__doc__)
    parser.add_argument(
        "--slot",
        type=int,
        default=None,
        help="slot to take when free (default: the first free one on this host)",
    )
    parser.add_argument(
        "--supervised", action="store_true", help="stop when the parent process is gone"
    )
    args = parser.parse_args()
    raise SystemExit(run_one(args.slot, supervised=args.supervised))


if __name__ == "__main__":
    main()

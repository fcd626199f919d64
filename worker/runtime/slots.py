"""Process slots: which number a worker process has on its host.

A slot names a worker's transactional id (``<group>.<instance>.<slot>``) and its metrics port
(``metrics_port + slot``). Two live processes must never share one (they would fence each
other's transactions), and a restarted process should take its dead predecessor's, so that its
``init_transactions`` aborts the transaction the predecessor left open at once instead of after
the transaction timeout.

A slot is claimed by holding ``fcntl.flock`` on ``<state_dir>/worker-slots/<group>.<slot>.lock``
for the life of the process. The kernel releases the lock when the process ends, however it ends
(kill -9 included), so a slot is free exactly when no live process holds it. Lock files are never
deleted: unlinking a file another process has open would let two processes lock two inodes of
one name.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from schemas.errors import AigisError

MAX_SLOTS = 1024
"""Slots tried on one host before giving up; far more than any host runs workers."""


class SlotUnavailable(AigisError):  # noqa: N818 - names a state, like KafkaUnavailable
    """No slot could be claimed: the one asked for is held, or the lock directory is unusable."""


def slot_directory(state_dir: Path) -> Path:
    """Where the slot locks of every group on this host live."""
    return state_dir / "worker-slots"


def lock_path(directory: Path, group: str, slot: int) -> Path:
    # A group id may hold any character; a file name may not.
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", group)
    return directory / f"{safe}.{slot}.lock"


@contextmanager
def claim_slot(
    directory: Path, group: str, *, preferred: int | None = None, fixed: int | None = None
) -> Iterator[int]:
    """Hold a slot of ``group`` on this host for the ``with`` block; yields its number.

    ``fixed``: exactly that slot, or SlotUnavailable naming the process that holds it.
    Otherwise ``preferred`` when it is free (a supervisor's child K asks for K), else the first
    free slot from 0 upwards.
    """
    for asked in (fixed, preferred):
        if asked is not None and not 0 <= asked < MAX_SLOTS:
            raise SlotUnavailable(f"worker slot {asked} is outside 0..{MAX_SLOTS - 1}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SlotUnavailable(
            f"cannot create the worker slot directory {directory} ({exc}); make the state "
            "directory (AIGIS_STATE_DIR) writable"
        ) from exc
    if fixed is not None:
        candidates: list[int] = [fixed]
    else:
        first = [] if preferred is None else [preferred]
        candidates = first + [n for n in range(MAX_SLOTS) if n != preferred]
    for slot in candidates:
        fd = _try_lock(lock_path(directory, group, slot))
        if fd is None:
            continue
        try:
            yield slot
        finally:
            os.close(fd)  # releases the lock
        return
    if fixed is not None:
        path = lock_path(directory, group, fixed)
        raise SlotUnavailable(
            f"worker slot {fixed} of group {group!r} is held by another process on this host "
            f"({_holder(path)}, lock {path}); give each process its own AIGIS_WORKER__SLOT, or "
            "leave it unset to take the first free slot"
        )
    raise SlotUnavailable(
        f"all {MAX_SLOTS} worker slots of group {group!r} on this host are held (locks in "
        f"{directory}); stop some workers"
    )


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding the lock on ``path``, or None when another process holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise SlotUnavailable(f"cannot open the worker slot lock {path} ({exc})") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise SlotUnavailable(f"cannot lock the worker slot lock {path} ({exc})") from exc
    # Who holds it, for the error a second claimant of a fixed slot reports.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid else "pid unknown"


def metrics_port(base: int, slot: int) -> int:
    """The metrics port of slot ``slot``: ``base + slot`` (``base`` 0, no endpoint, stays 0)."""
    if base == 0:
        return 0
    if base + slot > 65535:
        raise SlotUnavailable(
            f"worker slot {slot} would serve metrics on port {base + slot}, past 65535; lower "
            "AIGIS_WORKER__METRICS_PORT"
        )
    return base + slot

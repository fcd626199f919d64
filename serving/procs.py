"""Local service processes (the dev stack's Kafka and Redis, TorchServe): pid files, ownership
checks, ports, stopping.

A pid alone is not proof: pids are reused. A process counts as ours only while its command line
still contains a marker we chose when starting it (the path of its config file), so ``down``
never signals a stranger that happens to hold a recycled pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path


def read_pid(path: Path) -> int | None:
    """The pid stored in ``path``, or None when the file is missing or not a pid."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def write_pid(path: Path, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (zombies, which only wait to be reaped, do not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state letter follows the command name, which is in parentheses and may hold spaces.
    if stat.rsplit(")", 1)[-1].split()[0] not in {"Z", "X"}:
        return True
    # A multi-threaded process (a JVM) whose main thread has exited shows as a zombie while its
    # other threads still wind down: it is gone only when they are.
    return threads > 1


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def owned_pid(pid_file: Path, marker: str) -> int | None:
    """The live pid recorded in ``pid_file`` whose command line contains ``marker``, else None."""
    pid = read_pid(pid_file)
    if pid is None or not alive(pid) or marker not in command_line(pid):
        return None
    return pid


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def stop(pid: int, timeout_s: float) -> bool:
    """SIGTERM ``pid``, wait up to ``timeout_s``, then SIGKILL. True if SIGKILL was needed."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_gone(pid, timeout_s):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_gone(pid, 10.0):
        raise OSError(f"process {pid} survived SIGKILL")
    return True


def stop_owned(pid: int | None, pid_file: Path, timeout_s: float) -> str:
    """Stop ``pid`` (already checked to be ours) and remove its pid file; say what happened."""
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return "not running"
    killed = stop(pid, timeout_s)
    pid_file.unlink(missing_ok=True)
    return f"stopped (pid {pid}{', killed after the stop timeout' if killed else ''})"


def wait_gone(pid: int, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for ``pid`` to exit (reaping it when it is our child)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pid)
        if not alive(pid):
            return True
        time.sleep(0.1)
    return not alive(pid)


def _reap(pid: int) -> None:
    # A process started by this very interpreter stays a zombie until it is waited for.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, or a note that it does not exist."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])

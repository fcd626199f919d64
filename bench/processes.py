"""What the worker benchmark measures processes with: CPU time from /proc, a worker process of
its own, and its Prometheus endpoint."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from schemas.settings import Settings
from tests.streams import subprocess_env

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def group_pids(leader: int | None) -> list[int]:
    """The processes of ``leader``'s process group (TorchServe's JVM and its Python workers)."""
    if leader is None:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == leader:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@contextmanager
def worker_process(
    settings: Settings, *, code: Path | None = None, unset: Sequence[str] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker process of ``settings``; ``code``: a checkout to run the worker from instead of
    this one (another version of the code, same environment); ``unset``: prefixes of variables
    to leave out (settings that code does not know)."""
    env = {
        **subprocess_env(settings),
        "AIGIS_WORKER__GUARANTEE": settings.worker.guarantee.value,
        "AIGIS_SERVING__REQUEST_BODY": settings.serving.request_body,
        "AIGIS_LOG_LEVEL": os.environ.get("BENCH_WORKER_LOG_LEVEL", "WARNING"),
    }
    env = {k: v for k, v in env.items() if not k.startswith(tuple(unset))}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    command = [sys.executable, "-m", "aigis.run", "--slot", "0"]
    proc = subprocess.Popen(command, env=env, cwd=code)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def scrape(port: int) -> dict[str, float]:
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.labels
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

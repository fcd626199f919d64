"""What the review console's tests share: review items, free test ports, and a PostgreSQL server
of the test's own (Debian's server, started as the ``postgres`` user when run as root, since its
tools refuse root)."""

from __future__ import annotations

import base64
import glob
import hashlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from PIL import Image

from schemas.labels import GENERATORS, Decision
from schemas.messages import ReviewItem, Verdict

AIGIS = str(Path(sys.executable).with_name("aigis"))
PORTS = range(22400, 22500)
"""Ports the console's tests may use (the console, PostgreSQL)."""


def free_port(taken: set[int] | None = None) -> int:
    """A port of :data:`PORTS` that nothing listens on now."""
    for port in PORTS:
        if taken and port in taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            if taken is not None:
                taken.add(port)
            return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


def png(seed: int, size: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), (seed * 37 % 256, 255 - seed * 11 % 256, 90)).save(
        out, format="PNG"
    )
    return out.getvalue()


def review_item(
    seed: int,
    event_id: str,
    *,
    caption: str | None = "a photo",
    source: str | None = "tenant-a",
    image: bytes | None = None,
    p_ai: float = 0.55,
) -> ReviewItem:
    data = image if image is not None else png(seed)
    probs = {"real": 1 - p_ai, **{g: p_ai / (len(GENERATORS) - 1) for g in GENERATORS[1:]}}
    verdict = Verdict(
        event_id=event_id,
        source=source,
        image_sha256=hashlib.sha256(data).hexdigest(),
        p_ai=p_ai,
        decision=Decision.NEEDS_REVIEW,
        generator="unknown",
        generator_probs=probs,
        model_name="detector",
        model_version="1",
    )
    return ReviewItem(verdict=verdict, caption=caption, image_b64=base64.b64encode(data).decode())


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(
            f"PostgreSQL's {name} is missing: run deploy/console/install.sh "
            "(apt-get install -y postgresql)"
        )
    return found[-1]


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster (a new directory under /tmp, removed after) on a free test
    port; yields its URL."""
    home = Path(tempfile.mkdtemp(prefix="aigis-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        # runuser lives in /usr/sbin, which a user's PATH may leave out.
        runuser = shutil.which("runuser", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
        as_postgres = [runuser or "runuser", "-u", "postgres", "--"]
        shutil.chown(home, "postgres", "postgres")
    data = home / "data"
    port = free_port()
    subprocess.run(
        [*as_postgres, _pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [*as_postgres, _pg_bin("pg_ctl"), "-D", str(data)]
    subprocess.run(
        # The server's output goes to its log: a pipe would be held open by it forever.
        [*pg_ctl, "-l", str(home / "log"), "-o", options, "-w", "start"],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*pg_ctl, "-m", "fast", "-w", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(home, ignore_errors=True)


class Console:
    """``aigis review serve`` as a child process with its own environment; restartable."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.url = f"http://127.0.0.1:{port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def run_cli(self, *args: str, stdin: str = "") -> str:
        done = subprocess.run(
            [AIGIS, *args], env=self.env, input=stdin.encode(), capture_output=True, timeout=60
        )
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()

    def start(self) -> None:
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                [AIGIS, "review", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self._proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError("the console did not answer within 60 s")

    def stop(self) -> int:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGTERM)
        code = self._proc.wait(timeout=60)
        self._proc = None
        return code

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=30)


def logged_in(url: str, name: str, password: str) -> tuple[httpx.Client, str]:
    """An HTTP client logged in as ``name``, and its session's CSRF token."""
    client = httpx.Client(base_url=url, timeout=10)
    page = client.get("/login")
    csrf = _csrf(page.text)
    done = client.post("/login", data={"name": name, "password": password, "csrf": csrf})
    assert done.status_code == 303
    assert done.headers["location"] == "/", done.headers
    return client, _csrf(client.get("/queue").text)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def event_id_on(html: str) -> str | None:
    found = re.search(r'data-event-id="([^"]+)"', html)
    return found.group(1) if found else None


def item_id_on(html: str) -> int:
    found = re.search(r'data-item-id="(\d+)"', html)
    assert found, html[:500]
    return int(found.group(1))

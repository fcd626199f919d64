"""A Redis server from Debian's ``redis-server``: loopback, no persistence, daemonised.

Files under ``<state_dir>/redis``: ``redis.conf`` (written here, mode 0600 because it may hold
the password), ``redis.pid``, ``redis.log``. Redis is a cache in aigis, so nothing is saved.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis

from aigis.devstack.errors import DevStackError
from aigis.devstack.service import LocalService, loopback_endpoint, require_template
from schemas.settings import Settings
from serving import procs
from worker import redis_client


class RedisServer(LocalService):
    """The local Redis of one state directory."""

    name = "redis"

    def __init__(self, settings: Settings) -> None:
        url = urlsplit(settings.redis.url)
        if url.scheme != "redis":
            raise DevStackError(
                f"AIGIS_REDIS__URL={settings.redis.url!r}: `aigis dev` runs plain redis:// on "
                "loopback; use redis://127.0.0.1:6379/0"
            )
        super().__init__(
            settings,
            *loopback_endpoint(
                url.netloc.rpartition("@")[2] or "127.0.0.1:6379", "Redis", "AIGIS_REDIS__URL"
            ),
        )
        self.config_path = self.home / "redis.conf"

    @property
    def log_file(self) -> Path:
        return self.home / "redis.log"

    def pid(self) -> int | None:
        # A daemonised redis rewrites its title to "redis-server host:port", so match on that.
        return procs.owned_pid(self.pid_file, f"redis-server {self.address}")

    def start(self) -> str:
        """Start Redis unless it runs; return once it answers PING."""
        pid = self.pid()
        if pid is not None:
            self._wait_healthy()
            return f"already running (pid {pid})"
        self.require_free(self.port, "Redis", "AIGIS_REDIS__URL")
        binary = self._binary()
        self._write_config()
        self.pid_file.unlink(missing_ok=True)
        started = time.monotonic()
        done = subprocess.run([binary, str(self.config_path)], capture_output=True, text=True)
        if done.returncode != 0:
            raise self._failure(
                f"redis-server exited with {done.returncode} ({done.stderr.strip()})"
            )
        try:
            self._wait_healthy()
        except DevStackError:
            self.stop()
            raise
        return f"started (pid {self.pid()}) in {time.monotonic() - started:.1f} s"

    def probe(self, ours: bool) -> tuple[str, str]:
        started = time.monotonic()
        try:
            info = self._client().info("server")
        except redis.RedisError as exc:
            raise DevStackError(f"does not answer INFO ({type(exc).__name__}: {exc})") from exc
        seconds = time.monotonic() - started
        return str(info.get("redis_version", "?")), f"INFO in {seconds * 1000:.1f} ms"

    def _client(self) -> redis.Redis:
        return redis_client.connect(self.settings, timeout_s=2.0)

    def _binary(self) -> str:
        found = shutil.which("redis-server")
        if found:
            return found
        script = require_template("redis/install.sh")
        done = subprocess.run(["bash", str(script)], capture_output=True, text=True)
        found = shutil.which("redis-server")
        if done.returncode != 0 or found is None:
            output = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            raise DevStackError(
                f"redis-server is not installed and {script} could not install it "
                f"(exit {done.returncode}); install it with `apt-get install -y redis-server`.\n"
                f"{output}"
            )
        return found

    def _write_config(self) -> None:
        lines = [
            "# Written by `aigis dev up`; rewritten on every start.",
            f"bind {self.host}",
            f"port {self.port}",
            "protected-mode yes",
            "daemonize yes",
            f"pidfile {self.pid_file}",
            f"logfile {self.log_file}",
            f"dir {self.home}",
            # A cache: nothing to save, nothing to replay after a restart.
            'save ""',
            "appendonly no",
        ]
        if self.settings.redis.password is not None:
            lines.append(f"requirepass {self.settings.redis.password.get_secret_value()}")
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_path.touch(mode=0o600)
        os.chmod(self.config_path, 0o600)
        self.config_path.write_text("\n".join(lines) + "\n")

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.settings.dev.start_timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                if self.pid() is not None and self._client().ping():
                    return
            except redis.RedisError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
        raise self._failure(
            f"Redis did not answer PING within {self.settings.dev.start_timeout_s:.0f} s ({last})"
        )

    def _failure(self, what: str) -> DevStackError:
        return DevStackError(
            f"{what}; its log is {self.log_file}.\n--- last lines of the log:\n"
            f"{procs.tail(self.log_file, 20)}",
            log=self.log_file,
        )

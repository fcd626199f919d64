"""Start, stop and inspect the TorchServe instance of one state directory.

The JVM is launched directly rather than through the ``torchserve`` script: that script keeps
its pid file in the system temp directory (one TorchServe per machine) and ``torchserve --stop``
stops whichever instance wrote it. Here every state directory owns its instance:

- ``<state_dir>/torchserve/config.properties``: rendered from ``serving/torchserve``;
- ``<state_dir>/torchserve/torchserve.pid``: pid, config and model store of the running JVM;
- ``<state_dir>/torchserve/logs``: TorchServe's logs (``ts_log.log``, ``model_log.log``, ...);
- ``<state_dir>/torchserve/tmp``: extracted archives;
- ``settings.serving_key_file``: TorchServe writes ``key_file.json`` into its working directory,
  so the JVM runs in that file's directory.

:func:`running_torchserve` is the helper tests and benchmarks use to run their own instance.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog

from schemas.errors import AigisError
from schemas.settings import Settings
from serving import procs
from serving.client.management import ManagementClient, ManagementError, ModelDescription
from serving.client.manifest import ArchiveInfo, newest_archives, read_manifest
from serving.client.transport import ServingUnavailable
from serving.torchserve.layout import (
    MAIN_CLASS,
    ServerError,
    ServerPaths,
    first_line_with,
    host_port,
    java,
    jvm_command,
    render_config,
    size,
)

__all__ = ["ServerStatus", "TorchServe", "running_torchserve"]

log = structlog.get_logger(__name__)

_KEY_FILE_NAME: Final[str] = "key_file.json"
_POLL_S: Final[float] = 0.5
OMP_WAIT_POLICY: Final[str] = "PASSIVE"
"""``OMP_WAIT_POLICY`` of the model workers: their OpenMP threads sleep when they wait rather
than spin. TorchServe shares its cores with its frontend, the client, the worker and Kafka, and
a parallel region waits for its slowest thread. On two loaded cores the tiny model served 13
items/s with two spinning threads, 119 with two sleeping ones
(bench/results/2026-11-30-serving.md)."""
_LOAD_FAILURES: Final[tuple[str, ...]] = ("Load model failed", "Failed register model")
"""Lines of TorchServe's own log that mean a model will never become ready."""


@dataclass(frozen=True)
class ServerStatus:
    """What ``aigis serve status`` shows."""

    running: bool
    pid: int | None
    model_store: Path | None
    auth: bool
    models: tuple[ModelDescription, ...]
    """Every registered version of every model (empty when not running or unreachable)."""
    defaults: dict[str, str]
    """Model name -> its default version (the one ``/predictions/<name>`` serves)."""
    problem: str | None = None
    """Why the models could not be listed, when the JVM runs but does not answer."""


@dataclass(frozen=True)
class _Record:
    pid: int
    config: str
    model_store: str
    auth: bool


class TorchServe:
    """The TorchServe instance of ``settings.state_dir``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.paths = ServerPaths.of(settings)
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        """Where this start's lines begin in ts_log.log (the logs outlive runs)."""

    def start(
        self,
        model_store: Path,
        *,
        models: Sequence[str] | None = None,
        auth: bool = True,
        timeout_s: float | None = None,
        echo_logs: bool = False,
    ) -> list[ArchiveInfo]:
        """Start TorchServe with ``models`` (archive file names in ``model_store``; default the
        newest version of each model there) and return once all their workers are READY.
        ``echo_logs`` also writes TorchServe's log lines to this process's stdout (for a
        container whose foreground process this is).

        Raises ServerError when it is already running, a port is taken, or a model fails to
        load (TorchServe is stopped again then).
        """
        archives = self.archives(model_store, models)
        self._check_can_start()
        self._prepare(auth)
        names = [a.path.name for a in archives]
        command = jvm_command(self.settings, self.paths, model_store.resolve(), names)
        self._log_offset = size(self.paths.logs / "ts_log.log")
        env = {
            **os.environ,
            "LOG_LOCATION": str(self.paths.logs),
            "METRICS_LOCATION": str(self.paths.logs),
            "TMPDIR": str(self.paths.tmp),
            # Serving reads weights from the archive only; never reach a model hub.
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        env.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)  # an operator's own setting wins
        # TorchServe's log lines go to its rotating files under logs/ (and to stdout, which is
        # shown only with echo_logs); stderr keeps what the JVM says before logging starts.
        with self.paths.console_log.open("ab") as console:
            self._process = subprocess.Popen(
                command,
                cwd=self.paths.key_file.parent,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=None if echo_logs else subprocess.DEVNULL,
                stderr=console,
                start_new_session=True,  # its own process group: stop() ends the workers too
                umask=0o077,  # the key file holds secrets; logs and models stay private too
            )
        record = _Record(
            self._process.pid, str(self.paths.config), str(model_store.resolve()), auth
        )
        self.paths.pid_file.write_text(json.dumps(record.__dict__), encoding="utf-8")
        log.info("torchserve_starting", pid=record.pid, models=[a.path.name for a in archives])
        try:
            self.wait_ready([a.name for a in archives], timeout_s=timeout_s)
        except BaseException:
            self.stop()
            raise
        log.info("torchserve_ready", pid=record.pid, inference=self.settings.serving.inference_url)
        return archives

    def wait_ready(self, names: Sequence[str], *, timeout_s: float | None = None) -> None:
        """Wait until the default version of every model in ``names`` has all workers READY.

        TorchServe's /ping says Healthy before that, so the management API is polled.
        """
        deadline = time.monotonic() + (timeout_s or self.settings.serving.start_timeout_s)
        waiting = set(names)
        polling = self.settings.serving.model_copy(update={"retries": 0})
        with ManagementClient(polling, key_file=self._key_file()) as management:
            while waiting:
                self._check_alive()
                for name in sorted(waiting):
                    if _ready(management, name):
                        waiting.discard(name)
                if not waiting:
                    return
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"TorchServe's workers for {', '.join(sorted(waiting))} were not READY "
                        f"within {timeout_s or self.settings.serving.start_timeout_s:.0f} s; "
                        f"see {self.paths.logs / 'model_log.log'}"
                    )
                time.sleep(_POLL_S)

    def stop(self, *, timeout_s: float | None = None) -> bool:
        """Stop this state directory's TorchServe and its workers; return once the JVM is gone.

        False when it was not running. SIGTERM first, SIGKILL after ``timeout_s``.
        """
        record = self._record()
        if record is None:
            return False
        if not self._is_ours(record):
            self._forget()
            return False
        wait_s = timeout_s or self.settings.serving.stop_timeout_s
        # The JVM alone first: it shuts its workers down in order.
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGTERM)
        if not self._wait_gone(record.pid, wait_s):
            log.warning("torchserve_killed_after_sigterm", pid=record.pid)
            _signal_group(record.pid, signal.SIGKILL)
            self._wait_gone(record.pid, 10.0)
        # Python workers normally exit with the JVM; any left in its group go now.
        _signal_group(record.pid, signal.SIGKILL)
        self._forget()
        log.info("torchserve_stopped", pid=record.pid)
        return True

    def wait(self, stop: threading.Event) -> bool:
        """Block until ``stop`` is set, then stop TorchServe and return True; or return False as
        soon as TorchServe exits on its own."""
        record = self._record()
        while record is not None and self._alive(record.pid) and not stop.wait(1.0):
            pass
        if stop.is_set():
            self.stop()
            return True
        self._forget()
        return False

    def pid(self) -> int | None:
        """The running JVM's pid, or None."""
        record = self._record()
        return record.pid if record is not None and self._is_ours(record) else None

    def status(self) -> ServerStatus:
        record = self._record()
        if record is None or not self._is_ours(record):
            return ServerStatus(
                running=False, pid=None, model_store=None, auth=False, models=(), defaults={}
            )
        described: list[ModelDescription] = []
        defaults: dict[str, str] = {}
        problem = None
        polling = self.settings.serving.model_copy(update={"retries": 0})
        try:
            with ManagementClient(polling, key_file=self._key_file()) as management:
                for name in management.list_models():
                    defaults[name] = management.default_version(name)
                    described.extend(management.describe_all(name))
        except AigisError as exc:
            problem = str(exc)
        return ServerStatus(
            running=True,
            pid=record.pid,
            model_store=Path(record.model_store),
            auth=record.auth,
            models=tuple(described),
            defaults=defaults,
            problem=problem,
        )

    # -- start ---------------------------------------------------------------------------------

    def archives(self, model_store: Path, models: Sequence[str] | None) -> list[ArchiveInfo]:
        """The archives ``start`` would load; raises ServerError when the store cannot serve."""
        if not model_store.is_dir():
            raise ServerError(
                f"model store {model_store} is not a directory; create it with `aigis export "
                "--output STORE`"
            )
        if models:
            archives = []
            for name in models:
                if Path(name).name != name:
                    raise ServerError(
                        f"--models takes archive file names inside the model store, not {name!r}"
                    )
                archives.append(read_manifest(model_store / name))
            return archives
        archives = newest_archives(model_store)
        if not archives:
            raise ServerError(
                f"model store {model_store} holds no .mar archive; build one with `aigis export "
                f"--model DIR --output {model_store}`"
            )
        return archives

    def _check_can_start(self) -> None:
        if self.pid() is not None:
            raise ServerError(
                f"TorchServe of {self.settings.state_dir} is already running (pid {self.pid()}); "
                "stop it with `aigis serve stop`"
            )
        self._forget()
        if shutil.which(java()) is None:
            raise ServerError(
                "java was not found; TorchServe needs Java 17 on PATH (or JAVA_HOME set)"
            )
        if self.paths.key_file.name != _KEY_FILE_NAME:
            raise ServerError(
                f"TorchServe always names its key file {_KEY_FILE_NAME}; set "
                f"AIGIS_SERVING__KEY_FILE to a path ending in {_KEY_FILE_NAME}"
            )
        serving = self.settings.serving
        for label, url in (
            ("INFERENCE_URL", serving.inference_url),
            ("MANAGEMENT_URL", serving.management_url),
            ("METRICS_URL", serving.metrics_url),
        ):
            host, port = host_port(url)
            if procs.port_open(host, port):
                raise ServerError(
                    f"port {port} of {url} is taken by another process (another TorchServe?); "
                    f"stop it or choose other ports with AIGIS_SERVING__{label}"
                )

    def _prepare(self, auth: bool) -> None:
        for directory in (self.paths.root, self.paths.logs, self.paths.tmp):
            directory.mkdir(parents=True, exist_ok=True)
        self.paths.key_file.parent.mkdir(parents=True, exist_ok=True)
        # A key file left by an earlier run would hand clients dead keys until the new one lands.
        self.paths.key_file.unlink(missing_ok=True)
        self.paths.config.write_text(render_config(self.settings, auth=auth), encoding="utf-8")

    def _key_file(self) -> Path | None:
        record = self._record()
        return self.paths.key_file if record is None or record.auth else None

    def _check_alive(self) -> None:
        record = self._record()
        if record is None or not self._alive(record.pid):
            raise ServerError(
                f"TorchServe exited during start-up; the end of its log:\n{self._log_tail()}"
            )
        failure = first_line_with(
            self.paths.logs / "ts_log.log", _LOAD_FAILURES, offset=self._log_offset
        )
        if failure is not None:
            raise ServerError(
                f"TorchServe could not load a model ({failure.strip()}); the end of the model "
                f"log:\n{procs.tail(self.paths.logs / 'model_log.log')}"
            )

    def _log_tail(self) -> str:
        ts_log = self.paths.logs / "ts_log.log"
        return procs.tail(ts_log if ts_log.exists() else self.paths.console_log)

    # -- stop ----------------------------------------------------------------------------------

    def _record(self) -> _Record | None:
        try:
            data = json.loads(self.paths.pid_file.read_text(encoding="utf-8"))
            return _Record(**data)
        except (OSError, ValueError, TypeError):
            return None

    def _is_ours(self, record: _Record) -> bool:
        """True when ``record.pid`` is alive and is the JVM started with this state's config."""
        if not self._alive(record.pid):
            return False
        command = procs.command_line(record.pid)
        return MAIN_CLASS in command and record.config in command

    def _alive(self, pid: int) -> bool:
        if self._process is not None and self._process.pid == pid:
            self._process.poll()  # reaps our own child, which would linger a zombie
        return procs.alive(pid)

    def _wait_gone(self, pid: int, timeout_s: float) -> bool:
        self._alive(pid)
        return procs.wait_gone(pid, timeout_s)

    def _forget(self) -> None:
        self.paths.pid_file.unlink(missing_ok=True)
        self.paths.key_file.unlink(missing_ok=True)
        self._process = None


@contextlib.contextmanager
def running_torchserve(
    settings: Settings,
    model_store: Path,
    *,
    models: Sequence[str] | None = None,
    auth: bool = True,
) -> Iterator[TorchServe]:
    """Run TorchServe for the duration of a ``with`` block (tests, benchmarks); always stopped."""
    server = TorchServe(settings)
    server.start(model_store, models=models, auth=auth)
    try:
        yield server
    finally:
        server.stop()


def _ready(management: ManagementClient, name: str) -> bool:
    try:
        [default] = management.describe(name)
    except (ServingUnavailable, ManagementError, ValueError):
        return False  # not listening yet, or the model is not registered yet
    return default.workers_ready > 0 and default.workers_ready == len(default.workers)


def _signal_group(pid: int, signum: signal.Signals) -> None:
    # The JVM leads its own process group (start_new_session), so this reaches its workers too
    # and nothing else.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)

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
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Final
from urllib.parse import urlsplit

import structlog

from schemas.errors import AigisError
from schemas.settings import Settings
from serving.client.http import ServingUnavailable
from serving.client.management import ManagementClient, ManagementError, ModelDescription
from serving.client.manifest import ArchiveInfo, newest_archives, read_manifest

__all__ = [
    "ServerError",
    "ServerPaths",
    "ServerStatus",
    "TorchServe",
    "running_torchserve",
]

log = structlog.get_logger(__name__)

_MAIN_CLASS: Final[str] = "org.pytorch.serve.ModelServer"
_KEY_FILE_NAME: Final[str] = "key_file.json"
_GRPC_PORT_OFFSET: Final[int] = 10
_JOB_QUEUE_SIZE: Final[int] = 1000
_POLL_S: Final[float] = 0.5
# Lines of TorchServe's own log that mean a model will never become ready.
_LOAD_FAILURES: Final[tuple[str, ...]] = ("Load model failed", "Failed register model")


class ServerError(AigisError):
    """TorchServe cannot be started, stopped or reached as asked."""


@dataclass(frozen=True)
class ServerPaths:
    """Where one state directory's TorchServe keeps its files."""

    root: Path
    config: Path
    pid_file: Path
    logs: Path
    tmp: Path
    key_file: Path

    @classmethod
    def of(cls, settings: Settings) -> ServerPaths:
        root = settings.state_dir / "torchserve"
        return cls(
            root=root,
            config=root / "config.properties",
            pid_file=root / "torchserve.pid",
            logs=root / "logs",
            tmp=root / "tmp",
            key_file=settings.serving_key_file,
        )

    @property
    def console_log(self) -> Path:
        """What the JVM writes to stderr (errors before its logging starts)."""
        return self.logs / "jvm_stderr.log"


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
        archives = self._archives(model_store, models)
        self._check_can_start()
        self._prepare(auth)
        command = self._command(model_store.resolve(), [a.path.name for a in archives])
        self._log_offset = _size(self.paths.logs / "ts_log.log")
        env = {
            **os.environ,
            "LOG_LOCATION": str(self.paths.logs),
            "METRICS_LOCATION": str(self.paths.logs),
            "TMPDIR": str(self.paths.tmp),
            # Serving reads weights from the archive only; never reach a model hub.
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
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
        log.info("torchserve starting", pid=record.pid, models=[a.path.name for a in archives])
        try:
            self.wait_ready([a.name for a in archives], timeout_s=timeout_s)
        except BaseException:
            self.stop()
            raise
        log.info("torchserve ready", pid=record.pid, inference=self.settings.serving.inference_url)
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
            log.warning("torchserve ignored SIGTERM, killing it", pid=record.pid)
            _signal_group(record.pid, signal.SIGKILL)
            self._wait_gone(record.pid, 10.0)
        # Python workers normally exit with the JVM; any left in its group go now.
        _signal_group(record.pid, signal.SIGKILL)
        self._forget()
        log.info("torchserve stopped", pid=record.pid)
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

    def _archives(self, model_store: Path, models: Sequence[str] | None) -> list[ArchiveInfo]:
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
        if shutil.which(_java()) is None:
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
            host, port = _host_port(url)
            if _listening(host, port):
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

    def _command(self, model_store: Path, archives: list[str]) -> list[str]:
        home = _torchserve_home()
        return [
            _java(),
            f"-Dmodel_server_home={home}",
            f"-Djava.io.tmpdir={self.paths.tmp}",
            "-Xms64m",
            f"-Xmx{self.settings.serving.java_heap_mb}m",
            "-XX:+ExitOnOutOfMemoryError",
            "-cp",
            str(home / "ts" / "frontend" / "*"),
            _MAIN_CLASS,
            "--python",
            sys.executable,
            "-f",
            str(self.paths.config),
            "-s",
            str(model_store),
            "-ncs",  # no config snapshots: what runs is what `start` was told
            "-m",
            *archives,
        ]

    def _key_file(self) -> Path | None:
        record = self._record()
        return self.paths.key_file if record is None or record.auth else None

    def _check_alive(self) -> None:
        record = self._record()
        if record is None or not self._alive(record.pid):
            raise ServerError(
                f"TorchServe exited during start-up; the end of its log:\n{self._log_tail()}"
            )
        failure = _first_line_with(
            self.paths.logs / "ts_log.log", _LOAD_FAILURES, offset=self._log_offset
        )
        if failure is not None:
            raise ServerError(
                f"TorchServe could not load a model ({failure.strip()}); the end of the model "
                f"log:\n{_tail(self.paths.logs / 'model_log.log')}"
            )

    def _log_tail(self) -> str:
        return _tail(self.paths.logs / "ts_log.log") or _tail(self.paths.console_log)

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
        try:
            arguments = Path(f"/proc/{record.pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return _MAIN_CLASS.encode() in arguments and record.config.encode() in arguments

    def _alive(self, pid: int) -> bool:
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is None  # reaps our own child, which would linger a zombie
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z"

    def _wait_gone(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self._alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

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


def render_config(settings: Settings, *, auth: bool) -> str:
    """The config.properties of ``settings``."""
    serving = settings.serving
    inference_host, inference_port = _host_port(serving.inference_url)
    _, management_port = _host_port(serving.management_url)
    template = Template(files("serving.torchserve").joinpath("config.properties").read_text())
    max_bytes = serving.max_request_mb * 1024 * 1024
    return template.substitute(
        inference_address=serving.inference_url.rstrip("/"),
        management_address=serving.management_url.rstrip("/"),
        metrics_address=serving.metrics_url.rstrip("/"),
        grpc_address=inference_host,
        grpc_inference_port=inference_port + _GRPC_PORT_OFFSET,
        grpc_management_port=management_port + _GRPC_PORT_OFFSET,
        disable_token_authorization=str(not auth).lower(),
        token_expiration_min=serving.token_expiration_min,
        max_request_size=max_bytes,
        max_response_size=max_bytes,
        netty_threads=min(4, os.cpu_count() or 1),
        job_queue_size=_JOB_QUEUE_SIZE,
    )


def _ready(management: ManagementClient, name: str) -> bool:
    try:
        [default] = management.describe(name)
    except (ServingUnavailable, ManagementError, ValueError):
        return False  # not listening yet, or the model is not registered yet
    return default.workers_ready > 0 and default.workers_ready == len(default.workers)


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ServerError(f"{url} must name a host and a port, like http://127.0.0.1:8080")
    return parts.hostname, parts.port


def _listening(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def _signal_group(pid: int, signum: signal.Signals) -> None:
    # The JVM leads its own process group (start_new_session), so this reaches its workers too
    # and nothing else.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    return str(Path(java_home) / "bin" / "java") if java_home else "java"


def _torchserve_home() -> Path:
    spec = importlib.util.find_spec("ts")
    if spec is None or spec.origin is None:
        raise ServerError("TorchServe is not installed in this Python; pip install torchserve")
    return Path(spec.origin).resolve().parent.parent


def _first_line_with(path: Path, needles: tuple[str, ...], *, offset: int) -> str | None:
    try:
        with path.open("rb") as log_file:
            log_file.seek(offset)
            text = log_file.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    return next((line for line in text.splitlines() if any(n in line for n in needles)), None)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""

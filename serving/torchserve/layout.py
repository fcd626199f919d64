"""The files of one state directory's TorchServe, and the config.properties rendered for it.

Split from :mod:`serving.torchserve.server` (which starts and stops the JVM) so that what a
running instance looks like on disk and on the network is readable on its own.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Final
from urllib.parse import urlsplit

from schemas.errors import AigisError
from schemas.settings import Settings

_GRPC_PORT_OFFSET: Final[int] = 10
_JOB_QUEUE_SIZE: Final[int] = 1000


MAIN_CLASS: Final[str] = "org.pytorch.serve.ModelServer"
LOG_CONFIG: Final[Path] = Path(__file__).with_name("log4j2.xml")
"""TorchServe's logging without its per-request lines (the file says what and why)."""


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


def render_config(settings: Settings, *, auth: bool) -> str:
    """The config.properties of ``settings``."""
    serving = settings.serving
    inference_host, inference_port = host_port(serving.inference_url)
    _, management_port = host_port(serving.management_url)
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


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ServerError(f"{url} must name a host and a port, like http://127.0.0.1:8080")
    return parts.hostname, parts.port


def java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    return str(Path(java_home) / "bin" / "java") if java_home else "java"


def torchserve_home() -> Path:
    spec = importlib.util.find_spec("ts")
    if spec is None or spec.origin is None:
        raise ServerError("TorchServe is not installed in this Python; pip install torchserve")
    return Path(spec.origin).resolve().parent.parent


def first_line_with(path: Path, needles: tuple[str, ...], *, offset: int) -> str | None:
    try:
        with path.open("rb") as log_file:
            log_file.seek(offset)
            text = log_file.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    return next((line for line in text.splitlines() if any(n in line for n in needles)), None)


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def jvm_command(
    settings: Settings, paths: ServerPaths, model_store: Path, archives: list[str]
) -> list[str]:
    """The command line of the TorchServe JVM serving ``archives`` from ``model_store``."""
    home = torchserve_home()
    return [
        java(),
        f"-Dmodel_server_home={home}",
        f"-Djava.io.tmpdir={paths.tmp}",
        f"-Dlog4j.configurationFile={LOG_CONFIG}",
        "-Xms64m",
        f"-Xmx{settings.serving.java_heap_mb}m",
        "-XX:+ExitOnOutOfMemoryError",
        *(["-XX:TieredStopAtLevel=1"] if settings.serving.java_jit == "c1" else []),
        "-cp",
        str(home / "ts" / "frontend" / "*"),
        MAIN_CLASS,
        "--python",
        sys.executable,
        "-f",
        str(paths.config),
        "-s",
        str(model_store),
        "-ncs",  # no config snapshots: what runs is what `start` was told
        "-m",
        *archives,
    ]

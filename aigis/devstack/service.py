"""What every local service reports, and the address rules they share."""

from __future__ import annotations

import ipaddress
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from aigis.devstack.errors import DevStackError
from schemas.settings import Settings
from serving import procs

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy"
"""Templates and scripts that the local services are built from (``deploy/`` of the checkout)."""


class State(StrEnum):
    RUNNING = "running"
    """Started by ``aigis dev up`` with this state directory, and healthy."""
    STARTING = "starting"
    """Our process runs but does not answer yet."""
    STOPPED = "stopped"
    """Not running, nothing answers on its port."""
    FOREIGN = "foreign"
    """Something not started by this state directory answers on the port."""


@dataclass(frozen=True)
class ServiceStatus:
    """One service as ``aigis dev status`` shows it."""

    name: str
    address: str
    state: State
    pid: int | None = None
    version: str | None = None
    detail: str = ""
    """Health in words: the round trip time, or why it is not healthy."""
    log: Path | None = None
    started_here: bool | None = None
    """True when the process was started from this state directory (its pid file and its command
    line agree), False when what answers on the port was not, None when nothing runs."""

    @property
    def healthy(self) -> bool:
        return self.state is State.RUNNING


def loopback_endpoint(address: str, service: str, setting: str) -> tuple[str, int]:
    """Split ``host:port`` and insist that it is on this machine's loopback interface."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise DevStackError(f"{setting}={address!r} is not host:port; set it like 127.0.0.1:9092")
    host = host.strip("[]")
    if host != "localhost":
        try:
            is_loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            is_loopback = False
        if not is_loopback:
            raise DevStackError(
                f"{setting} points {service} at {host}, which is not this machine; `aigis dev` "
                "runs services on loopback only (use 127.0.0.1), production brokers are deployed "
                "from deploy/k8s"
            )
    return host, int(port)


def require_template(name: str) -> Path:
    path = DEPLOY_DIR / name
    if not path.is_file():
        raise DevStackError(
            f"{path} is missing; `aigis dev` runs from a checkout of the repository that has "
            "its deploy/ directory"
        )
    return path


class LocalService(ABC):
    """A server process that ``aigis dev up`` runs on loopback for one state directory.

    Subclasses say how to start it, how to recognise their process, and how to probe it; stopping
    and classifying (running, starting, stopped, foreign) are the same for every service.
    """

    name: str

    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.home = settings.state_dir / self.name
        self.pid_file = self.home / f"{self.name}.pid"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    @abstractmethod
    def log_file(self) -> Path:
        """The file that explains what the service did."""

    @abstractmethod
    def pid(self) -> int | None:
        """The pid of the process this state directory started, if it still runs."""

    @abstractmethod
    def start(self) -> str:
        """Start the service unless it runs; return, in words, once it is healthy."""

    @abstractmethod
    def probe(self, ours: bool) -> tuple[str, str]:
        """``(version, health in words)``; raise DevStackError when the service does not answer."""

    def stop(self) -> str:
        """Stop what this state directory started (SIGTERM, then SIGKILL after a timeout)."""
        return procs.stop_owned(self.pid(), self.pid_file, self.settings.dev.stop_timeout_s)

    def status(self) -> ServiceStatus:
        pid = self.pid()
        if pid is None and not procs.port_open(self.host, self.port):
            return ServiceStatus(
                self.name, self.address, State.STOPPED, detail="nothing listens on the port"
            )
        try:
            version, detail = self.probe(ours=pid is not None)
        except DevStackError as exc:
            state = State.STARTING if pid else State.FOREIGN
            return ServiceStatus(
                self.name, self.address, state, pid, detail=str(exc), started_here=pid is not None
            )
        if pid is None:
            detail = (
                f"answers ({detail}) but was not started by `aigis dev up` with state dir "
                f"{self.settings.state_dir}{self._stale_pid_note()}"
            )
            return ServiceStatus(
                self.name, self.address, State.FOREIGN, None, version, detail, started_here=False
            )
        return ServiceStatus(
            self.name, self.address, State.RUNNING, pid, version, detail, self.log_file, True
        )

    def _stale_pid_note(self) -> str:
        recorded = procs.read_pid(self.pid_file)
        if recorded is None:
            return ""
        return f" ({self.pid_file} names pid {recorded}, which is not that process)"

    def require_free(self, port: int, role: str, setting: str) -> None:
        """Refuse to start when a process we did not start holds ``port``."""
        if procs.port_open(self.host, port):
            raise DevStackError(
                f"port {port} on {self.host} (the {role} port) is taken by a process that "
                f"`aigis dev up` did not start with state dir {self.settings.state_dir}; stop it "
                f"or choose another port ({setting})"
            )

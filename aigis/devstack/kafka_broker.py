"""A single-node Kafka (KRaft, combined broker and controller) run from the cached jars.

Files under ``<state_dir>/kafka``: ``server.properties`` (rendered from
``deploy/kafka/server.properties``), ``data/`` (the formatted log directory), ``logs/server.log``
(log4j2) and ``logs/stdout.log`` (what the JVM prints before logging starts), ``kafka.pid`` and
``version`` (the jar version the running broker was started from).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from string import Template

import structlog

from aigis.devstack import kafka_dist
from aigis.devstack.errors import DevStackError
from aigis.devstack.service import LocalService, loopback_endpoint, require_template
from schemas.limits import MAX_MESSAGE_BYTES
from schemas.settings import Settings
from serving import procs
from worker import kafka

log = structlog.get_logger(__name__)

_MAIN_CLASS = "kafka.Kafka"
_STORAGE_TOOL = "kafka.tools.StorageTool"


class KafkaBroker(LocalService):
    """The local broker of one state directory."""

    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        servers = [s for s in settings.kafka.bootstrap_servers.split(",") if s.strip()]
        if len(servers) != 1:
            raise DevStackError(
                f"AIGIS_KAFKA__BOOTSTRAP_SERVERS lists {len(servers)} brokers; `aigis dev` runs "
                "exactly one, so give a single host:port"
            )
        super().__init__(
            settings, *loopback_endpoint(servers[0], "Kafka", "AIGIS_KAFKA__BOOTSTRAP_SERVERS")
        )
        self.controller_port = settings.dev.kafka_controller_port or self.port + 1
        self.config_path = self.home / "server.properties"
        self.data_dir = self.home / "data"
        self.log_dir = self.home / "logs"
        self.stdout_file = self.log_dir / "stdout.log"
        self.version_file = self.home / "version"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "server.log"

    def pid(self) -> int | None:
        return procs.owned_pid(self.pid_file, str(self.config_path))

    def start(self) -> str:
        """Start the broker unless it runs; return once a produce/consume round trip works."""
        pid = self.pid()
        if pid is not None:
            seconds = self._wait_healthy(pid, stop_on_failure=False)
            return f"already running (pid {pid}, round trip {seconds * 1000:.0f} ms)"
        self.pid_file.unlink(missing_ok=True)
        self.require_free(self.port, "Kafka broker", "AIGIS_KAFKA__BOOTSTRAP_SERVERS")
        self.require_free(
            self.controller_port, "Kafka controller", "AIGIS_DEV__KAFKA_CONTROLLER_PORT"
        )
        java = kafka_dist.java()
        libs = kafka_dist.ensure_jars(self.settings)
        self._write_config()
        if not (self.data_dir / "meta.properties").is_file():
            self._format(java, libs)
        started = time.monotonic()
        pid = self._launch(java, libs)
        seconds = self._wait_healthy(pid, stop_on_failure=True)
        log.info("kafka_started", pid=pid, address=self.address, seconds=round(seconds, 3))
        return f"started (pid {pid}) in {time.monotonic() - started:.1f} s"

    def probe(self, ours: bool) -> tuple[str, str]:
        try:
            seconds = kafka.round_trip(self.settings, timeout_s=5.0)
            versions = kafka.broker_versions(self.settings, timeout_s=5.0)
        except kafka.KafkaUnavailable as exc:
            raise DevStackError(str(exc)) from exc
        version = f"API {', '.join(sorted(set(versions.values())))}"
        if ours and self.version_file.is_file():
            version = f"{self.version_file.read_text().strip()} ({version})"
        return version, f"round trip {seconds * 1000:.0f} ms, {len(versions)} broker(s)"

    def render_config(self) -> str:
        """``deploy/kafka/server.properties`` with this broker's ports and directories."""
        template = Template(require_template("kafka/server.properties").read_text())
        return template.substitute(
            host=self.host,
            port=self.port,
            controller_port=self.controller_port,
            data_dir=self.data_dir,
            partitions=self.settings.kafka.partitions,
            message_max_bytes=MAX_MESSAGE_BYTES,
        )

    def _write_config(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.render_config())

    def _format(self, java: str, libs: Path) -> None:
        cluster_id = _cluster_id()
        command = [
            java,
            "-Xmx256m",
            *self._logging_options(),
            "-cp",
            f"{libs}/*",
            _STORAGE_TOOL,
            "format",
            "--cluster-id",
            cluster_id,
            "--config",
            str(self.config_path),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            output = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise DevStackError(
                f"formatting Kafka storage in {self.data_dir} failed (exit {done.returncode}); "
                f"remove that directory (`aigis dev down --purge`) and retry.\n{output}"
            )
        log.info("kafka_storage_formatted", cluster_id=cluster_id, data_dir=str(self.data_dir))

    def _launch(self, java: str, libs: Path) -> int:
        command = [
            java,
            f"-Xmx{self.settings.dev.kafka_heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            *self._logging_options(),
            "-cp",
            f"{libs}/*",
            _MAIN_CLASS,
            str(self.config_path),
        ]
        with self.stdout_file.open("ab") as out:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                # Its own session: the broker outlives this command and ignores its Ctrl+C.
                start_new_session=True,
            )
        procs.write_pid(self.pid_file, process.pid)
        self.version_file.write_text(f"{kafka_dist.kafka_version()}\n")
        return process.pid

    def _logging_options(self) -> list[str]:
        return [
            f"-Dkafka.logs.dir={self.log_dir}",
            f"-Dlog4j2.configurationFile={require_template('kafka/log4j2.properties')}",
        ]

    def _wait_healthy(self, pid: int, *, stop_on_failure: bool) -> float:
        """Wait until a round trip succeeds; return its seconds. Raise with the log tail if not."""
        deadline = time.monotonic() + self.settings.dev.start_timeout_s
        last = "the port never opened"
        with _quiet_kafka_client():
            while time.monotonic() < deadline:
                if not procs.alive(pid):
                    self.pid_file.unlink(missing_ok=True)
                    raise self._failure(f"Kafka (pid {pid}) exited while starting")
                if procs.port_open(self.host, self.port):
                    try:
                        return kafka.round_trip(self.settings, timeout_s=5.0)
                    except kafka.KafkaUnavailable as exc:
                        last = str(exc)
                time.sleep(0.5)
        if stop_on_failure:
            procs.stop(pid, self.settings.dev.stop_timeout_s)
            self.pid_file.unlink(missing_ok=True)
        raise self._failure(
            f"Kafka (pid {pid}) was not healthy within {self.settings.dev.start_timeout_s:.0f} s "
            f"({last})"
        )

    def _failure(self, what: str) -> DevStackError:
        parts = [f"{what}; its log is {self.log_file}.", "--- last lines of the log:"]
        parts.append(procs.tail(self.log_file, 25))
        if self.stdout_file.is_file() and self.stdout_file.stat().st_size:
            parts += [f"--- last lines of {self.stdout_file}:", procs.tail(self.stdout_file, 10)]
        return DevStackError("\n".join(parts), log=self.log_file)


def _cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64, as Kafka's ``Uuid`` prints it."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # Kafka refuses ids that start with '-' (they read as a command-line option).
        if not text.startswith("-"):
            return text


@contextlib.contextmanager
def _quiet_kafka_client() -> Iterator[None]:
    """Silence kafka-python's connection warnings while the broker is expected to refuse them."""
    logger = logging.getLogger("kafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)

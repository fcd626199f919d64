"""``up``, ``down`` and ``status`` over every local service of one state directory."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aigis.devstack.errors import DevStackError
from aigis.devstack.kafka_broker import KafkaBroker
from aigis.devstack.redis_server import RedisServer
from aigis.devstack.service import LocalService, ServiceStatus
from schemas.settings import Settings
from serving.torchserve.layout import ServerPaths
from serving.torchserve.server import TorchServe
from worker import kafka


@dataclass(frozen=True)
class Outcome:
    """What one step of ``up`` or ``down`` did, in words."""

    name: str
    address: str
    result: str


def services(settings: Settings) -> list[LocalService]:
    """The services in start order (Redis is quick, so its problems show first)."""
    return [RedisServer(settings), KafkaBroker(settings)]


def up(settings: Settings, report: Callable[[Outcome], None] = lambda _: None) -> list[Outcome]:
    """Start every service that is not running, then create the topics that are missing.

    Idempotent: running services are only checked. Raises DevStackError naming the service and
    its log when one cannot be started; services started before it keep running.
    """
    outcomes = []
    for service in services(settings):
        outcome = Outcome(service.name, service.address, service.start())
        report(outcome)
        outcomes.append(outcome)
    topics = create_topics(settings)
    report(topics)
    outcomes.append(topics)
    return outcomes


def create_topics(settings: Settings, wait_s: float = 0.0) -> Outcome:
    """Create the topics of ``settings.topics`` that are missing, on whatever brokers settings name.

    Waits up to ``wait_s`` for the brokers to answer first (a container that starts beside its
    broker needs that); raises KafkaUnavailable after that.
    """
    deadline = time.monotonic() + wait_s
    while True:
        # Each attempt gets what is left of the wait, so a down broker fails in about wait_s.
        attempt_s = min(30.0, max(1.0, deadline - time.monotonic()))
        try:
            created = kafka.ensure_topics(settings, settings.topics.all(), timeout_s=attempt_s)
            break
        except kafka.KafkaUnavailable:
            if time.monotonic() >= deadline:
                raise
            time.sleep(1.0)
    result = f"all {len(settings.topics.all())} present"
    if created:
        result += f", created {', '.join(created)} ({settings.kafka.partitions} partitions each)"
    return Outcome("topics", settings.kafka.bootstrap_servers, result)


_CONTENTS = {"kafka": "its topics, data and logs", "redis": "its config, data and log"}
"""What ``--purge`` deletes with each service's directory, in words."""


def down(
    settings: Settings,
    *,
    purge: bool = False,
    purge_all: bool = False,
    report: Callable[[Outcome], None] = lambda _: None,
) -> list[Outcome]:
    """Stop what ``up`` started with this state directory, in reverse order; leave others alone.

    With ``purge`` also delete each service's directory (Kafka's data and logs, Redis' files).
    ``purge_all`` implies it and also deletes the registry, the label store and TorchServe's
    files, each only when it lies inside the state directory; it refuses (DevStackError, before
    stopping anything) while this state directory's TorchServe runs.
    """
    if purge_all:
        _require_torchserve_stopped(settings)
    outcomes = []
    for service in reversed(services(settings)):
        result = service.stop()
        if purge or purge_all:
            shutil.rmtree(service.home, ignore_errors=True)
            result += f"; deleted {service.home} ({_CONTENTS.get(service.name, 'its files')})"
        outcomes.append(Outcome(service.name, service.address, result))
        report(outcomes[-1])
    if purge_all:
        for name, path in _model_state(settings).items():
            outcomes.append(Outcome(name, "-", _delete_inside(settings.state_dir, path)))
            report(outcomes[-1])
    elif purge:
        outcomes.append(
            Outcome("kept", "-", "the registry, the label store and TorchServe's files (--all)")
        )
        report(outcomes[-1])
    return outcomes


def _model_state(settings: Settings) -> dict[str, Path | None]:
    """What ``--all`` deletes: None for a label store that is not a local directory."""
    url = settings.store_url
    store = (
        Path(url.removeprefix("file://")) if url.startswith("file://") or "://" not in url else None
    )
    return {
        "registry": settings.registry_dir,
        "labels": store,
        "torchserve": ServerPaths.of(settings).root,
    }


def _delete_inside(state_dir: Path, path: Path | None) -> str:
    if path is None:
        return "kept: the label store is not a local directory"
    root = state_dir.resolve()
    target = path.resolve()
    if target == root or not target.is_relative_to(root):
        return f"kept {path}: it is outside the state dir {state_dir}"
    if not target.exists():
        return f"nothing at {path}"
    shutil.rmtree(target)
    return f"deleted {path}"


def _require_torchserve_stopped(settings: Settings) -> None:
    pid = TorchServe(settings).pid()
    if pid is not None:
        raise DevStackError(
            f"TorchServe of state dir {settings.state_dir} still runs (pid {pid}); stop it with "
            "`aigis serve stop` before deleting its files with --all"
        )


def status(settings: Settings) -> list[ServiceStatus]:
    return [service.status() for service in services(settings)]

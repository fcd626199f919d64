"""``up``, ``down`` and ``status`` over every local service of one state directory."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

from aigis.devstack.kafka_broker import KafkaBroker
from aigis.devstack.redis_server import RedisServer
from aigis.devstack.service import LocalService, ServiceStatus
from schemas.settings import Settings
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


def down(
    settings: Settings, *, purge: bool = False, report: Callable[[Outcome], None] = lambda _: None
) -> list[Outcome]:
    """Stop what ``up`` started with this state directory, in reverse order; leave others alone.

    With ``purge`` also delete each service's files (Kafka's data and logs, Redis' log).
    """
    outcomes = []
    for service in reversed(services(settings)):
        result = service.stop()
        if purge:
            shutil.rmtree(service.home, ignore_errors=True)
            result += f"; removed {service.home}"
        outcome = Outcome(service.name, service.address, result)
        report(outcome)
        outcomes.append(outcome)
    return outcomes


def status(settings: Settings) -> list[ServiceStatus]:
    return [service.status() for service in services(settings)]

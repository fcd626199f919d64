"""A stack of its own for the fault campaign: Kafka, Redis and TorchServe on ports and a state
directory nobody else uses, so that stopping any of them disturbs no other test.

Everything is configured through the environment of this process (``AIGIS_*`` variables, the
same way workers started from here read it), which :func:`isolate_environment` sets first.
"""

from __future__ import annotations

import os
from pathlib import Path

from aigis.devstack import stack
from aigis.devstack.kafka_broker import KafkaBroker
from aigis.devstack.redis_server import RedisServer
from schemas.settings import Settings
from serving.torchserve.archive import ExportOptions, export_random
from serving.torchserve.server import TorchServe

PORT_OFFSET = 20_000
"""Default ports + 20000: Kafka 29092, Redis 26379, TorchServe 28080-28082 (the suite's own
stack uses + 10000)."""

# Small server batches that form quickly, as the worker tests use.
EXPORT = ExportOptions(version="1", batch_size=8, max_batch_delay_ms=10, max_forward_batch=8)


def isolate_environment(state_dir: Path, port_offset: int) -> None:
    """Forget every ``AIGIS_*`` variable this process inherited and point it at its own stack.

    The stream settings favour fast recovery: a dead member's partitions move after 6 s, a held
    batch is retried at least every 2 s.
    """
    for name in [n for n in os.environ if n.upper().startswith("AIGIS_")]:
        del os.environ[name]
    os.environ.update(
        {
            "AIGIS_STATE_DIR": str(state_dir),
            "AIGIS_DEV__PORT_OFFSET": str(port_offset),
            "AIGIS_LOG_FORMAT": "json",
            "AIGIS_KAFKA__PARTITIONS": "6",
            "AIGIS_WORKER__METRICS_PORT": "0",
            "AIGIS_WORKER__SESSION_TIMEOUT_MS": "6000",
            "AIGIS_WORKER__SERVING_BACKOFF_MAX_S": "2",
            "PYTHONUNBUFFERED": "1",
        }
    )


class FaultStack:
    """The campaign's services, each of which can be stopped and started again."""

    def __init__(self, state_dir: Path) -> None:
        self.store = state_dir / "model-store"

    @property
    def settings(self) -> Settings:
        return Settings()  # the environment as it is now (load_settings caches the first)

    def up(self) -> None:
        stack.up(self.settings)
        if not any(self.store.glob("*.mar")):
            self.store.mkdir(parents=True, exist_ok=True)
            export_random(self.store, EXPORT)
        self.serving_start()

    def down(self) -> None:
        TorchServe(self.settings).stop()
        stack.down(self.settings)

    # The fault actions of tests.faults.schedule, by name; each start is a no-op when running.
    def serving_start(self) -> None:
        server = TorchServe(self.settings)
        if server.pid() is None:
            server.start(self.store)

    def serving_stop(self) -> None:
        TorchServe(self.settings).stop()

    def cache_start(self) -> None:
        RedisServer(self.settings).start()

    def cache_stop(self) -> None:
        RedisServer(self.settings).stop()

    def broker_restart(self) -> None:
        broker = KafkaBroker(self.settings)
        broker.stop()
        broker.start()

"""Kafka (KRaft) and Redis on this machine, for development, tests and the demo.

Everything derives from settings: ports from ``settings.kafka.bootstrap_servers`` and
``settings.redis.url``, files from ``settings.state_dir`` (one directory per stack, so several
stacks run side by side on different ports) and downloads from ``settings.cache_dir``.
"""

from aigis.devstack.errors import DevStackError
from aigis.devstack.service import ServiceStatus, State
from aigis.devstack.stack import Outcome, create_topics, down, status, up

__all__ = [
    "DevStackError",
    "Outcome",
    "ServiceStatus",
    "State",
    "create_topics",
    "down",
    "status",
    "up",
]

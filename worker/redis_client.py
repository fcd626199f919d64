"""Redis clients configured from settings: URL, password (a SecretStr) and timeouts in one place.

Imports redis-py and the standard library only: worker hosts load it.
"""

from __future__ import annotations

from typing import Any

import redis

from schemas.settings import Settings


def connect(settings: Settings, *, timeout_s: float | None = None, **overrides: Any) -> redis.Redis:
    """A client of ``settings.redis.url``; connects lazily, on its first command.

    Socket and connect timeouts default to ``settings.redis.socket_timeout_s`` (short: Redis is an
    accelerator, and a slow cache must not stall scoring); ``timeout_s`` replaces both, and
    ``overrides`` are any other ``redis.Redis`` options.
    """
    timeout = settings.redis.socket_timeout_s if timeout_s is None else timeout_s
    password = settings.redis.password
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        **overrides,
    }
    if password is not None:
        options["password"] = password.get_secret_value()
    return redis.Redis.from_url(settings.redis.url, **options)

"""How settings become a Redis client (no server needed: clients connect lazily)."""

from __future__ import annotations

import pytest

from schemas.settings import RedisSettings, Settings
from worker.redis_client import connect

pytestmark = pytest.mark.unit


def test_client_takes_url_password_and_short_timeouts() -> None:
    settings = Settings(
        redis=RedisSettings(url="redis://127.0.0.1:1234/3", password="pw", socket_timeout_s=0.25)  # type: ignore[arg-type]
    )
    kwargs = connect(settings).connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 1234, 3)
    assert kwargs["password"] == "pw"
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 0.25


def test_timeout_and_overrides() -> None:
    client = connect(Settings(), timeout_s=5.0, health_check_interval=30)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 5.0
    assert kwargs["health_check_interval"] == 30
    assert kwargs.get("password") is None

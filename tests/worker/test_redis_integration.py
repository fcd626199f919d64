"""The Redis that `aigis dev up` runs: reachable, a cache without persistence."""

from __future__ import annotations

import pytest
import redis

pytestmark = pytest.mark.integration


def test_round_trip_with_ttl(redis_client: redis.Redis, redis_prefix: str) -> None:
    key = f"{redis_prefix}:verdict"
    assert redis_client.set(key, b'{"p_ai": 0.9}', ex=60)
    assert redis_client.get(key) == b'{"p_ai": 0.9}'
    assert 0 < redis_client.ttl(key) <= 60


def test_runs_without_persistence(redis_client: redis.Redis) -> None:
    assert redis_client.config_get("save") == {"save": ""}
    assert redis_client.config_get("appendonly") == {"appendonly": "no"}

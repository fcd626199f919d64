"""Back-off delays and transactional ids."""

from __future__ import annotations

import pytest

from schemas.backoff import backoff_delay
from schemas.settings import Settings, WorkerSettings
from worker.runtime.group import transactional_id

pytestmark = pytest.mark.unit


def test_backoff_grows_is_jittered_and_capped() -> None:
    for attempt, ceiling in [(1, 0.2), (2, 0.4), (3, 0.8), (10, 5.0)]:
        delays = {backoff_delay(attempt, 0.2, 5.0) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1


def test_backoff_honours_retry_after_within_the_cap() -> None:
    assert backoff_delay(1, 0.2, 5.0, retry_after=3.0) >= 3.0
    assert backoff_delay(1, 0.2, 5.0, retry_after=60.0) <= 5.0


def test_transactional_ids_are_stable_per_slot() -> None:
    settings = Settings(worker=WorkerSettings(group_id="g", instance_id="host-a"))
    assert transactional_id(settings, 0) == "g.host-a.0"
    assert transactional_id(settings, 3) == "g.host-a.3"

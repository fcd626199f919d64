"""Settings checked and derived before validation: misspelt groups, the stack's port offset."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from schemas.settings import Settings, load_settings

pytestmark = pytest.mark.unit


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """An environment without the test run's AIGIS_* variables; settings read afresh."""
    for name in list(os.environ):
        if name.startswith("AIGIS_"):
            monkeypatch.delenv(name)
    load_settings.cache_clear()
    yield monkeypatch
    load_settings.cache_clear()


def test_the_offset_moves_every_default_port(env: pytest.MonkeyPatch) -> None:
    env.setenv("AIGIS_DEV__PORT_OFFSET", "40000")
    settings = Settings()
    assert settings.kafka.bootstrap_servers == "127.0.0.1:49092"
    assert settings.redis.url == "redis://127.0.0.1:46379/0"
    assert settings.serving.inference_url == "http://127.0.0.1:48080"
    assert settings.serving.management_url == "http://127.0.0.1:48081"
    assert settings.serving.metrics_url == "http://127.0.0.1:48082"
    assert settings.worker.metrics_port == 49108
    assert settings.store.metrics_port == 49107  # the sink's metrics are on by default
    # The controller's default is the broker's port + 1, so it moves with the broker.
    assert settings.dev.kafka_controller_port is None


def test_explicit_ports_win_over_the_offset(env: pytest.MonkeyPatch) -> None:
    env.setenv("AIGIS_DEV__PORT_OFFSET", "40000")
    env.setenv("AIGIS_REDIS__URL", "redis://127.0.0.1:23379/2")
    env.setenv("AIGIS_WORKER__METRICS_PORT", "0")
    settings = Settings(serving={"management_url": "http://127.0.0.1:23081"})
    assert settings.redis.url == "redis://127.0.0.1:23379/2"
    assert settings.worker.metrics_port == 0
    assert settings.serving.management_url == "http://127.0.0.1:23081"
    assert settings.serving.inference_url == "http://127.0.0.1:48080"
    assert settings.kafka.bootstrap_servers == "127.0.0.1:49092"
    # Other fields of a group that is given in part keep their defaults.
    assert settings.redis.key_prefix == "aigis:verdict"


def test_offset_zero_changes_nothing(env: pytest.MonkeyPatch) -> None:
    env.setenv("AIGIS_DEV__PORT_OFFSET", "0")
    assert Settings() == Settings(dev={"port_offset": 0})
    assert Settings().kafka.bootstrap_servers == "127.0.0.1:9092"
    assert (Settings().worker.metrics_port, Settings().store.metrics_port) == (9108, 9107)


@pytest.mark.parametrize("offset", ["-1", "60000", "many"])
def test_a_bad_offset_names_the_setting(env: pytest.MonkeyPatch, offset: str) -> None:
    env.setenv("AIGIS_DEV__PORT_OFFSET", offset)
    with pytest.raises(ValidationError, match="port_offset"):
        Settings()


def test_a_misspelt_group_is_an_error(env: pytest.MonkeyPatch) -> None:
    env.setenv("AIGIS_WORKR__BATCH_SIZE", "64")
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = str(caught.value)
    assert "AIGIS_WORKR__BATCH_SIZE" in message
    for group in ("DEV", "KAFKA", "WORKER"):
        assert group in message


def test_plain_aigis_variables_are_not_settings_and_stay_allowed(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("AIGIS_SOMETHING_ELSE", "1")
    env.setenv("AIGIS_WORKER__BATCH_SIZE", "64")
    assert Settings().worker.batch_size == 64

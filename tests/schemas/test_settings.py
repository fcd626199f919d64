"""Settings: environment parsing, nested groups, immutability, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from schemas.settings import Guarantee, Settings

pytestmark = pytest.mark.unit


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No AIGIS_* variable from the test run leaks into the settings under test."""
    import os

    for name in list(os.environ):
        if name.startswith("AIGIS_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_defaults_work_on_one_machine(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.kafka.partitions == 4
    assert settings.redis.url == "redis://127.0.0.1:6379/0"
    assert settings.worker.guarantee is Guarantee.EXACTLY_ONCE
    assert settings.topics.all()[0] == "aigis.images"
    assert len(set(settings.topics.all())) == 6


def test_reads_top_level_and_nested_variables(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("AIGIS_STATE_DIR", str(tmp_path))
    clean_env.setenv("AIGIS_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:29092")
    clean_env.setenv("AIGIS_KAFKA__PARTITIONS", "8")
    clean_env.setenv("AIGIS_TOPICS__DLQ", "team.dlq")
    clean_env.setenv("AIGIS_WORKER__GUARANTEE", "at_least_once")
    clean_env.setenv("AIGIS_DEV__STOP_TIMEOUT_S", "2.5")
    settings = Settings()
    assert settings.state_dir == tmp_path
    assert settings.kafka.bootstrap_servers == "127.0.0.1:29092"
    assert settings.kafka.partitions == 8
    assert settings.topics.dlq == "team.dlq"
    assert settings.worker.guarantee is Guarantee.AT_LEAST_ONCE
    assert settings.dev.stop_timeout_s == 2.5
    assert settings.store_url == str(tmp_path / "labels")
    assert settings.registry_dir == tmp_path / "registry"


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("AIGIS_KAFKA__PARTITIONS", "0", "partitions"),
        ("AIGIS_KAFKA__PARTITIONS", "four", "partitions"),
        ("AIGIS_WORKER__GUARANTEE", "maybe_once", "guarantee"),
        ("AIGIS_WORKER__HUMAN_THRESHOLD", "0.9", "human_threshold must be below"),
        ("AIGIS_REDIS__TTL_SECONDS", "-1", "ttl_seconds"),
        ("AIGIS_FETCH__SCHEMES", '["https", "ftp"]', "schemes"),
        ("AIGIS_FETCH__FILE_ROOTS", '["images"]', "must be absolute"),
        ("AIGIS_FETCH__PRIVATE_NETWORKS", '["10.0.0.0/33"]', "private_networks"),
        ("AIGIS_FETCH__PORTS", "[0]", "ports"),
        ("AIGIS_RETRAIN__MIN_USABLE_ITEMS", "0", "min_usable_items"),
    ],
)
def test_rejects_bad_values_with_the_field_name(
    clean_env: pytest.MonkeyPatch, name: str, value: str, field: str
) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ValidationError, match=field):
        Settings()


def test_unknown_field_in_a_group_is_an_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AIGIS_KAFKA__BOOTSTRAP_SERVER", "typo:9092")
    with pytest.raises(ValidationError, match="bootstrap_server"):
        Settings()


def test_is_frozen_at_every_level() -> None:
    settings = Settings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.log_level = "DEBUG"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        settings.kafka.partitions = 2  # type: ignore[misc]


def test_secrets_are_never_printed(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AIGIS_KAFKA__SASL_PASSWORD", "kafka-s3cret")
    clean_env.setenv("AIGIS_REDIS__PASSWORD", "redis-s3cret")
    clean_env.setenv("AIGIS_SERVING__TOKEN", "serving-s3cret")
    settings = Settings()
    assert isinstance(settings.kafka.sasl_password, SecretStr)
    assert settings.kafka.sasl_password.get_secret_value() == "kafka-s3cret"
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "s3cret" not in text
    assert "**********" in repr(settings.redis)


def test_the_fetch_policy_admits_public_https_only_by_default(
    clean_env: pytest.MonkeyPatch,
) -> None:
    fetch = Settings().fetch
    assert fetch.schemes == {"https"}
    assert (fetch.s3_buckets, fetch.file_roots, fetch.private_networks) == (set(), (), ())
    assert fetch.max_fetch_s == 3 * fetch.timeout_s + 2 * fetch.backoff_max_s


def test_the_fetch_policy_reads_json_lists(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("AIGIS_FETCH__FILE_ROOTS", f'["{tmp_path}"]')
    clean_env.setenv("AIGIS_FETCH__PRIVATE_NETWORKS", '["10.0.0.0/8", "fd00::/8"]')
    clean_env.setenv("AIGIS_FETCH__PRIVATE_HOSTS", '["Images.Internal."]')
    clean_env.setenv("AIGIS_FETCH__S3_BUCKETS", '["team-images"]')
    fetch = Settings().fetch
    assert fetch.file_roots == (tmp_path,)
    assert [str(n) for n in fetch.private_networks] == ["10.0.0.0/8", "fd00::/8"]
    assert fetch.private_hosts == {"images.internal"}
    assert fetch.s3_buckets == {"team-images"}

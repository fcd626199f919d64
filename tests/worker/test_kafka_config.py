"""How settings become Kafka client options (no broker needed)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.limits import MAX_DLQ_MESSAGE_BYTES, MAX_INLINE_IMAGE_BYTES, MAX_MESSAGE_BYTES
from schemas.settings import KafkaSettings, Settings
from worker import kafka

pytestmark = pytest.mark.unit


def test_plaintext_config() -> None:
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=" h1:9092, h2:9093 ,", client_id="x"))
    assert kafka.client_config(settings) == {
        "bootstrap_servers": ["h1:9092", "h2:9093"],
        "client_id": "x",
        "security_protocol": "PLAINTEXT",
        "bootstrap_timeout_ms": 5000,
    }


def test_the_connect_timeout_bounds_every_client_bootstrap() -> None:
    settings = Settings(kafka=KafkaSettings(connect_timeout_s=1.5))
    assert kafka.client_config(settings)["bootstrap_timeout_ms"] == 1500
    with pytest.raises(ValidationError):
        KafkaSettings(connect_timeout_s=0)


def test_sasl_config_unwraps_the_secret_only_for_the_client() -> None:
    settings = Settings(
        kafka=KafkaSettings(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username="aigis",
            sasl_password="pw",  # type: ignore[arg-type]
        )
    )
    config = kafka.client_config(settings)
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config["sasl_plain_username"] == "aigis"
    assert config["sasl_plain_password"] == "pw"
    assert "pw" not in repr(settings)


def test_topic_limits_fit_the_largest_messages() -> None:
    settings = Settings()
    images = int(kafka.topic_configs(settings, settings.topics.images)["max.message.bytes"])
    dlq = int(kafka.topic_configs(settings, settings.topics.dlq)["max.message.bytes"])
    # The largest inline image as base64, and a dead letter that holds a whole images record.
    assert images > MAX_INLINE_IMAGE_BYTES * 4 // 3
    assert dlq > images * 4 // 3


def test_topics_holding_captions_and_images_get_a_retention() -> None:
    settings = Settings()
    day_ms = 24 * 3600 * 1000
    retention = {
        name: kafka.topic_configs(settings, name).get("retention.ms")
        for name in settings.topics.all()
    }
    assert retention == {
        settings.topics.images: None,
        settings.topics.verdicts: None,
        settings.topics.review: str(7 * day_ms),
        settings.topics.review_decisions: None,
        settings.topics.pseudo_labels: str(7 * day_ms),
        settings.topics.dlq: str(14 * day_ms),
    }


def test_retention_follows_the_settings_and_the_topic_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIGIS_KAFKA__REVIEW_RETENTION_MS", "3600000")
    monkeypatch.setenv("AIGIS_KAFKA__PSEUDO_LABELS_RETENTION_MS", "-1")
    monkeypatch.setenv("AIGIS_KAFKA__DLQ_RETENTION_MS", "60000")
    monkeypatch.setenv("AIGIS_TOPICS__REVIEW", "team.review")
    settings = Settings()
    assert kafka.topic_configs(settings, "team.review") == {
        "max.message.bytes": str(MAX_MESSAGE_BYTES),
        "retention.ms": "3600000",
    }
    assert kafka.topic_configs(settings, "aigis.review") == {
        "max.message.bytes": str(MAX_MESSAGE_BYTES)
    }
    assert kafka.topic_configs(settings, settings.topics.pseudo_labels)["retention.ms"] == "-1"
    assert kafka.topic_configs(settings, settings.topics.dlq) == {
        "max.message.bytes": str(MAX_DLQ_MESSAGE_BYTES),
        "retention.ms": "60000",
    }


@pytest.mark.parametrize("value", ["0", "-2", "59999", "7d", "1e400", ""])
def test_a_retention_that_would_drop_everything_or_is_not_a_number_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("AIGIS_KAFKA__REVIEW_RETENTION_MS", value)
    with pytest.raises(ValidationError, match="review_retention_ms"):
        Settings()


def test_production_topic_settings_reach_every_topic_created(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIGIS_KAFKA__REPLICATION_FACTOR", "3")
    monkeypatch.setenv("AIGIS_KAFKA__MIN_INSYNC_REPLICAS", "2")
    monkeypatch.setenv("AIGIS_KAFKA__IMAGES_RETENTION_MS", "259200000")
    monkeypatch.setenv("AIGIS_KAFKA__VERDICTS_RETENTION_MS", "604800000")
    settings = Settings()
    configs = {name: kafka.topic_configs(settings, name) for name in settings.topics.all()}
    assert {c["min.insync.replicas"] for c in configs.values()} == {"2"}
    assert configs[settings.topics.images]["retention.ms"] == "259200000"
    assert configs[settings.topics.verdicts]["retention.ms"] == "604800000"
    assert "retention.ms" not in configs[settings.topics.review_decisions]


def test_min_insync_replicas_above_the_replication_factor_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIGIS_KAFKA__MIN_INSYNC_REPLICAS", "2")
    with pytest.raises(ValidationError, match="min_insync_replicas"):
        Settings()


def test_the_stream_producer_batches_as_the_settings_say() -> None:
    from worker.runtime.checkpoint import _producer_options

    defaults = _producer_options(Settings())
    assert defaults == {"linger_ms": 5, "batch_size": 1024 * 1024}
    tuned = Settings(kafka=KafkaSettings(stream_linger_ms=50, stream_batch_bytes=256 * 1024))
    assert _producer_options(tuned) == {"linger_ms": 50, "batch_size": 256 * 1024}


@pytest.mark.parametrize(
    "field",
    [
        {"stream_linger_ms": -1},
        {"stream_linger_ms": 3_600_000},
        {"stream_batch_bytes": 100},
        {"stream_fetch_min_bytes": 0},
        {"stream_fetch_max_wait_ms": -5},
        {"stream_fetch_max_wait_ms": "soon"},
    ],
)
def test_stream_client_options_out_of_range_are_refused_by_name(field: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as caught:
        KafkaSettings(**field)  # type: ignore[arg-type]
    assert next(iter(field)) in str(caught.value)

"""How settings become Kafka client options (no broker needed)."""

from __future__ import annotations

import pytest

from schemas.limits import MAX_INLINE_IMAGE_BYTES
from schemas.settings import KafkaSettings, Settings
from worker import kafka

pytestmark = pytest.mark.unit


def test_plaintext_config() -> None:
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=" h1:9092, h2:9093 ,", client_id="x"))
    assert kafka.client_config(settings) == {
        "bootstrap_servers": ["h1:9092", "h2:9093"],
        "client_id": "x",
        "security_protocol": "PLAINTEXT",
    }


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

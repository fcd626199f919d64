"""Fixtures for the whole suite: settings, the real Kafka and Redis, fresh topics and groups.

Integration tests run against the services that ``scripts/test.sh`` starts with ``aigis dev up``
on test ports; the ``AIGIS_*`` environment says where they are. A missing service fails the
test that needs it with the reason, it never skips it: a green run means the code was exercised.
Fixtures for one package belong in ``tests/<package>/conftest.py``.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from schemas.errors import AigisError
from schemas.settings import Settings
from worker import kafka
from worker.redis_client import connect as connect_redis

# No test may reach a model hub: everything loads from local files or tiny configs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TRAINED_TINY_EPOCHS = 5
"""Epochs of the shared ``trained_tiny`` model: enough to beat chance clearly, and quick."""

_START_HINT = (
    "run the suite through `make test` (scripts/test.sh starts the services), or start them "
    "with `aigis dev up` under the same AIGIS_* environment"
)


def unique_name(request: pytest.FixtureRequest, prefix: str, max_len: int = 60) -> str:
    """``prefix.<test name>.<random>``: unique, traceable to its test, legal as a topic name."""
    test = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-.")[:max_len]
    return f"{prefix}.{test}.{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings read from the environment, as every aigis process reads them."""
    return Settings()


@pytest.fixture(scope="session")
def kafka_ready(settings: Settings) -> Settings:
    """Settings, once a produce/consume round trip with the broker has worked."""
    try:
        kafka.round_trip(settings, timeout_s=15.0)
    except AigisError as exc:
        pytest.fail(
            f"Kafka at {settings.kafka.bootstrap_servers} is not usable: {exc}\n{_START_HINT}",
            pytrace=False,
        )
    return settings


@pytest.fixture(scope="session")
def redis_ready(settings: Settings) -> Settings:
    """Settings, once Redis has answered PING."""
    try:
        with connect_redis(settings, timeout_s=5.0) as client:
            client.ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis at {settings.redis.url} is not usable ({type(exc).__name__}: {exc})\n"
            f"{_START_HINT}",
            pytrace=False,
        )
    return settings


@pytest.fixture
def redis_client(redis_ready: Settings) -> Iterator[redis.Redis]:
    """A client of the test Redis. Keep keys under ``redis_prefix``: they are deleted after."""
    with connect_redis(redis_ready, timeout_s=5.0) as client:
        yield client


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest, redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test alone; every key under it is deleted at teardown."""
    prefix = unique_name(request, "test")
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}*", count=500))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def make_topic(
    request: pytest.FixtureRequest, kafka_ready: Settings
) -> Iterator[Callable[..., str]]:
    """Factory of fresh topics: ``make_topic(partitions=1, role="t") -> name``.

    Each topic is created through the admin client (with the record limits of aigis topics) and
    deleted at teardown.
    """
    created: list[str] = []

    def make(partitions: int = 1, role: str = "t") -> str:
        name = unique_name(request, f"test.{role}")
        # A topic made for a role (dlq, review, ...) gets that role's configs (record size,
        # retention), as `aigis dev topics` gives the real one.
        field = role.replace("-", "_")
        settings = kafka_ready
        if field in type(kafka_ready.topics).model_fields:
            topics = kafka_ready.topics.model_copy(update={field: name})
            settings = kafka_ready.model_copy(update={"topics": topics})
        kafka.ensure_topics(settings, [name], partitions=partitions)
        created.append(name)
        return name

    yield make
    kafka.delete_topics(kafka_ready, created)


@pytest.fixture
def make_group_id(request: pytest.FixtureRequest) -> Callable[[], str]:
    """Factory of consumer group ids no other test or run has used."""
    return lambda: unique_name(request, "test-group")


@pytest.fixture
def topic(make_topic: Callable[..., str]) -> str:
    """One fresh single-partition topic."""
    return make_topic()


@pytest.fixture
def group_id(make_group_id: Callable[[], str]) -> str:
    """One fresh consumer group id."""
    return make_group_id()


@pytest.fixture
def read_topic(kafka_ready: Settings) -> Callable[..., list[ConsumerRecord]]:
    """``read_topic(topic, expected, timeout_s=20.0, **consumer_options) -> records``.

    Every record of ``topic`` from the beginning of each partition, without a consumer group,
    polled until ``expected`` have arrived or ``timeout_s`` has passed (then whatever arrived).
    Reads committed records only unless ``isolation_level="read_uncommitted"`` is given.
    """

    def read(
        topic: str, expected: int, timeout_s: float = 20.0, **options: Any
    ) -> list[ConsumerRecord]:
        consumer = kafka.consumer(kafka_ready, group_id=None, **options)
        try:
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
            if not partitions:
                pytest.fail(f"topic {topic!r} does not exist", pytrace=False)
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            records: list[ConsumerRecord] = []
            deadline = time.monotonic() + timeout_s
            while len(records) < expected and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=200).values():
                    records.extend(batch)
            return records
        finally:
            consumer.close(autocommit=False)

    return read


@pytest.fixture
def isolated_settings(
    kafka_ready: Settings, make_topic: Callable[..., str], make_group_id: Callable[[], str]
) -> Settings:
    """Settings whose six aigis topics are fresh (2 partitions each) and worker group is new.

    For tests that run a whole component (worker, sink) without seeing other tests' records.
    """
    topics = kafka_ready.topics.model_copy(
        update={
            field: make_topic(partitions=2, role=field.replace("_", "-"))
            for field in type(kafka_ready.topics).model_fields
        }
    )
    worker = kafka_ready.worker.model_copy(update={"group_id": make_group_id()})
    return kafka_ready.model_copy(update={"topics": topics, "worker": worker})


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint directory of the tiny fused detector trained on ``smoke``, once per session.

    Trained with the CLI's defaults except fewer epochs, so it clearly beats chance without
    reaching the full run's scores. Read it, never write into it: every package shares it.
    """
    from training.trainer import TrainRequest, train

    output = tmp_path_factory.mktemp("trained-tiny")
    train(
        TrainRequest(
            data="smoke",
            output=output,
            architecture="fused",
            preset="tiny",
            epochs=TRAINED_TINY_EPOCHS,
            name="tiny-smoke",
            version="1",
            progress=False,
        )
    )
    return output

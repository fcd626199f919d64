"""Kafka clients configured from settings: the one place that turns ``settings.kafka`` into clients.

The worker, the label-store sink, the tests and the demo build every producer, consumer and admin
client here, so bootstrap servers, client id and security travel the same way everywhere.
Messages are raw bytes in and out (encode them with :func:`schemas.encode`); keys are bytes too.

This module imports kafka-python and the standard library only: worker hosts load it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from schemas.errors import AigisError
from schemas.limits import MAX_DLQ_MESSAGE_BYTES, MAX_INLINE_IMAGE_BYTES, MAX_MESSAGE_BYTES
from schemas.settings import Settings

HEALTH_TOPIC = "_aigis.health"
"""One-partition topic that :func:`round_trip` writes to and reads back."""

assert MAX_MESSAGE_BYTES > (MAX_INLINE_IMAGE_BYTES * 4) // 3 + 64 * 1024
assert MAX_DLQ_MESSAGE_BYTES > (MAX_MESSAGE_BYTES * 4) // 3 + 64 * 1024


class KafkaUnavailable(AigisError):  # noqa: N818 - names a state, like ServingUnavailable
    """The brokers could not be reached or did not complete a request in time."""


class TopicError(AigisError):
    """The broker refused to create or delete a topic; the message carries its reason."""


def client_config(settings: Settings) -> dict[str, Any]:
    """Connection options shared by every client: bootstrap servers, client id, security, and
    how long a new client waits to reach a broker (``kafka.connect_timeout_s``; kafka-python
    waits 30 s by default, retrying in silence as far as the caller can tell)."""
    kafka = settings.kafka
    config: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in kafka.bootstrap_servers.split(",") if s.strip()],
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
        "bootstrap_timeout_ms": int(kafka.connect_timeout_s * 1000),
    }
    if kafka.sasl_mechanism:
        config["sasl_mechanism"] = kafka.sasl_mechanism
        config["sasl_plain_username"] = kafka.sasl_username
        if kafka.sasl_password is not None:
            # The secret leaves its SecretStr only here, inside the client's own config.
            config["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    return config


def producer(
    settings: Settings, *, transactional_id: str | None = None, **overrides: Any
) -> KafkaProducer:
    """A producer of raw bytes, idempotent with ``acks=all``.

    With ``transactional_id`` it is transactional and already initialised
    (``init_transactions`` has run, fencing any previous producer with that id), so the caller can
    ``begin_transaction`` straight away. ``overrides`` are kafka-python ``KafkaProducer`` options.
    """
    options: dict[str, Any] = {
        **client_config(settings),
        "acks": "all",
        "enable_idempotence": True,
        "max_request_size": MAX_DLQ_MESSAGE_BYTES,
        "linger_ms": 5,
    }
    if transactional_id is not None:
        options["transactional_id"] = transactional_id
    options.update(overrides)
    try:
        client = KafkaProducer(**options)
    except KafkaError as exc:
        raise _unavailable("create a producer", settings, exc) from exc
    if transactional_id is not None:
        try:
            client.init_transactions()
        except KafkaError as exc:
            client.close(timeout=1)
            raise _unavailable("initialise transactions", settings, exc) from exc
    return client


def consumer(
    settings: Settings, *, group_id: str | None, topics: Iterable[str] = (), **overrides: Any
) -> KafkaConsumer:
    """A consumer of raw bytes in ``group_id``, subscribed to ``topics`` when any are given.

    Defaults suit the pipeline: offsets are committed by the caller (never automatically), a new
    group starts at the earliest offset, and only committed transactional records are read.
    ``group_id=None`` gives a group-less consumer for ``assign``. ``overrides`` are kafka-python
    ``KafkaConsumer`` options.
    """
    options: dict[str, Any] = {
        **client_config(settings),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "max_partition_fetch_bytes": MAX_DLQ_MESSAGE_BYTES,
    }
    options.update(overrides)
    try:
        client = KafkaConsumer(**options)
    except KafkaError as exc:
        raise _unavailable("create a consumer", settings, exc) from exc
    topics = list(topics)
    if topics:
        client.subscribe(topics)
    return client


def admin(settings: Settings, **overrides: Any) -> KafkaAdminClient:
    """An admin client for the configured cluster."""
    try:
        return KafkaAdminClient(**{**client_config(settings), **overrides})
    except KafkaError as exc:
        raise _unavailable("create an admin client", settings, exc) from exc


def topic_configs(settings: Settings, name: str) -> dict[str, str]:
    """Per-topic broker configs that aigis sets when it creates topic ``name``.

    Record size limits on every topic; ``min.insync.replicas`` when set; ``retention.ms`` from
    settings on the topics whose records hold captions and images for people or the label store
    (review, pseudo-labels, DLQ), and on images and verdicts when set. Other topics keep the
    broker's default retention.
    """
    kafka = settings.kafka
    limit = MAX_DLQ_MESSAGE_BYTES if name == settings.topics.dlq else MAX_MESSAGE_BYTES
    configs = {"max.message.bytes": str(limit)}
    if kafka.min_insync_replicas is not None:
        configs["min.insync.replicas"] = str(kafka.min_insync_replicas)
    retention = {
        settings.topics.images: kafka.images_retention_ms,
        settings.topics.verdicts: kafka.verdicts_retention_ms,
        settings.topics.review: kafka.review_retention_ms,
        settings.topics.pseudo_labels: kafka.pseudo_labels_retention_ms,
        settings.topics.dlq: kafka.dlq_retention_ms,
    }.get(name)
    if retention is not None:
        configs["retention.ms"] = str(retention)
    return configs


def ensure_topics(
    settings: Settings,
    names: Iterable[str],
    partitions: int | None = None,
    *,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create whichever of ``names`` do not exist yet; return the names created.

    Idempotent and safe to race: a topic created concurrently by someone else counts as present.
    Partitions default to ``settings.kafka.partitions``; a created topic gets
    :func:`topic_configs`; existing topics are left as they are (their retention too).
    Returns once every created topic has a leader for each partition. ``timeout_s`` bounds
    reaching the brokers and waiting for the leaders.
    """
    wanted = list(dict.fromkeys(names))
    with _closing_admin(settings, timeout_s) as client:
        try:
            existing = set(client.list_topics())
            missing = [name for name in wanted if name not in existing]
            if not missing:
                return []
            spec = {
                name: {
                    "num_partitions": partitions or settings.kafka.partitions,
                    "replication_factor": settings.kafka.replication_factor,
                    "configs": topic_configs(settings, name),
                }
                for name in missing
            }
            response = client.create_topics(spec, raise_errors=False)
            created = []
            for topic in response["topics"]:
                if topic["error_code"] == 0:
                    created.append(topic["name"])
                elif topic["error_code"] != TopicAlreadyExistsError.errno:
                    raise TopicError(
                        f"Kafka refused to create topic {topic['name']!r}: "
                        f"{topic.get('error_message') or topic['error_code']}. "
                        "Check the partition count and replication factor in settings.kafka."
                    )
            client.wait_for_topics(missing, timeout_ms=int(timeout_s * 1000))
        except KafkaError as exc:
            raise _unavailable("create topics", settings, exc) from exc
    return created


def delete_topics(settings: Settings, names: Iterable[str]) -> None:
    """Delete ``names``; topics that do not exist are ignored."""
    wanted = list(names)
    if not wanted:
        return
    with _closing_admin(settings, 30.0) as client:
        try:
            response = client.delete_topics(wanted, raise_errors=False)
        except KafkaError as exc:
            raise _unavailable("delete topics", settings, exc) from exc
    for topic in response["topics"]:
        if topic["error_code"] not in (0, UnknownTopicOrPartitionError.errno):
            raise TopicError(f"Kafka refused to delete topic {topic['name']!r}: {topic}")


def broker_versions(settings: Settings, timeout_s: float = 30.0) -> dict[int, str]:
    """Each broker's id and the Kafka version it reports, as kafka-python infers it."""
    with _closing_admin(settings, timeout_s) as client:
        try:
            ids = [int(broker["broker_id"]) for broker in client.describe_cluster()["brokers"]]
            versions = {i: client.get_broker_version_data(i).broker_version for i in ids}
        except KafkaError as exc:
            raise _unavailable("describe the cluster", settings, exc) from exc
    return {i: ".".join(str(part) for part in version) for i, version in versions.items()}


def round_trip(settings: Settings, timeout_s: float = 10.0) -> float:
    """Produce one record to :data:`HEALTH_TOPIC` and read it back; return the seconds it took.

    Proves the broker accepts writes and serves reads, which a metadata request alone does not.
    Raises KafkaUnavailable with the reason when that fails within ``timeout_s``.
    """
    started = time.monotonic()
    ensure_topics(settings, [HEALTH_TOPIC], partitions=1, timeout_s=timeout_s)
    token = uuid.uuid4().bytes
    timeout_ms = int(timeout_s * 1000)
    send = producer(
        settings,
        max_block_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )
    try:
        meta = send.send(HEALTH_TOPIC, value=token, key=b"health").get(timeout=timeout_s)
    except KafkaError as exc:
        raise _unavailable("write a health record", settings, exc) from exc
    finally:
        send.close(timeout=2)
    read = consumer(
        settings,
        group_id=None,
        isolation_level="read_uncommitted",
        bootstrap_timeout_ms=timeout_ms,
    )
    try:
        partition = TopicPartition(HEALTH_TOPIC, meta.partition)
        read.assign([partition])
        read.seek(partition, meta.offset)
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            for records in read.poll(timeout_ms=100).values():
                if any(r.value == token for r in records):
                    return time.monotonic() - started
    except KafkaError as exc:
        raise _unavailable("read a health record", settings, exc) from exc
    finally:
        read.close(autocommit=False)
    raise KafkaUnavailable(
        f"Kafka at {settings.kafka.bootstrap_servers} accepted a record on {HEALTH_TOPIC} but did "
        f"not serve it back within {timeout_s:.0f} s; check the broker log."
    )


@contextmanager
def _closing_admin(settings: Settings, timeout_s: float) -> Iterator[KafkaAdminClient]:
    client = admin(settings, bootstrap_timeout_ms=int(timeout_s * 1000))
    try:
        yield client
    finally:
        client.close()


def _unavailable(action: str, settings: Settings, exc: KafkaError) -> KafkaUnavailable:
    servers = settings.kafka.bootstrap_servers
    if isinstance(exc, KafkaTimeoutError) and "bootstrap" in str(exc).lower():
        return KafkaUnavailable(
            f"could not {action}: no Kafka broker answered at {servers} in time "
            "(AIGIS_KAFKA__CONNECT_TIMEOUT_S); is the broker running (`aigis dev status`)?"
        )
    detail = str(exc)
    if not detail.startswith(type(exc).__name__):
        detail = f"{type(exc).__name__}: {detail}"
    return KafkaUnavailable(
        f"could not {action} at Kafka {servers} ({detail}); is the broker running "
        "(`aigis dev status`)?"
    )

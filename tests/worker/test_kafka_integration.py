"""worker.kafka against the real broker: plain and transactional produce/consume, topics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata

from schemas import ImageEvent, decode, encode
from schemas.limits import MAX_INLINE_IMAGE_BYTES
from schemas.settings import Settings
from worker import kafka

pytestmark = pytest.mark.integration


def _drain(consumer: KafkaConsumer, want: int, timeout_s: float = 20.0) -> list[bytes]:
    """Values polled until ``want`` arrived or the time is up (then whatever arrived)."""
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(values) < want and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            values.extend(r.value for r in records)
    return values


def test_produce_and_consume_in_a_fresh_group(
    kafka_ready: Settings, make_topic: Callable[..., str], group_id: str
) -> None:
    topic = make_topic(partitions=3)
    sent = [ImageEvent(event_id=f"e{i}", image_uri=f"s3://b/{i}.png") for i in range(10)]
    producer = kafka.producer(kafka_ready)
    for event in sent:
        producer.send(topic, key=event.event_id.encode(), value=encode(event))
    producer.flush(timeout=10)
    producer.close()

    consumer = kafka.consumer(kafka_ready, group_id=group_id, topics=[topic])
    try:
        received = [decode(ImageEvent, v) for v in _drain(consumer, len(sent))]
        consumer.commit()
    finally:
        consumer.close(autocommit=False)
    assert sorted(received, key=lambda e: e.event_id) == sorted(sent, key=lambda e: e.event_id)


def test_transactional_produce_with_offsets_and_read_committed(
    kafka_ready: Settings,
    make_topic: Callable[..., str],
    make_group_id: Callable[[], str],
    read_topic: Callable[..., list[ConsumerRecord]],
) -> None:
    source, sink = make_topic(), make_topic()
    plain = kafka.producer(kafka_ready)
    for i in range(3):
        plain.send(source, value=f"in-{i}".encode())
    plain.flush(timeout=10)
    plain.close()

    group = make_group_id()
    reader = kafka.consumer(kafka_ready, group_id=group, topics=[source])
    tx = kafka.producer(kafka_ready, transactional_id=f"{group}-tx")
    try:
        inputs = _drain(reader, 3)
        assert len(inputs) == 3
        tx.begin_transaction()
        for value in inputs:
            tx.send(sink, value=value.replace(b"in", b"out"))
        tx.send_offsets_to_transaction(
            {TopicPartition(source, 0): OffsetAndMetadata(3, "", -1)}, reader.group_metadata()
        )
        tx.commit_transaction()

        tx.begin_transaction()
        tx.send(sink, value=b"aborted")
        tx.flush(timeout=10)
        tx.abort_transaction()
        committed_offset = reader.committed(TopicPartition(source, 0))
    finally:
        tx.close(timeout=5)
        reader.close(autocommit=False)

    assert committed_offset == 3
    committed = [r.value for r in read_topic(sink, 3)]
    everything = [r.value for r in read_topic(sink, 4, isolation_level="read_uncommitted")]
    assert sorted(committed) == [b"out-0", b"out-1", b"out-2"]
    assert b"aborted" in everything
    # Nothing of the aborted transaction ever reaches a read_committed reader.
    assert len(read_topic(sink, 4, timeout_s=1.0)) == 3


def test_largest_inline_event_fits_through_the_broker(
    kafka_ready: Settings, topic: str, group_id: str
) -> None:
    event = ImageEvent.inline("big", b"\x89" * MAX_INLINE_IMAGE_BYTES, caption="big one")
    producer = kafka.producer(kafka_ready)
    producer.send(topic, key=b"big", value=encode(event)).get(timeout=30)
    producer.close()
    consumer = kafka.consumer(kafka_ready, group_id=group_id, topics=[topic])
    try:
        [value] = _drain(consumer, 1)
    finally:
        consumer.close(autocommit=False)
    assert decode(ImageEvent, value).inline_bytes() == event.inline_bytes()


def test_ensure_topics_is_idempotent(
    kafka_ready: Settings, make_group_id: Callable[[], str]
) -> None:
    name = make_group_id().replace("test-group", "test.ensure")
    try:
        assert kafka.ensure_topics(kafka_ready, [name, name], partitions=2) == [name]
        assert kafka.ensure_topics(kafka_ready, [name]) == []
        client = kafka.admin(kafka_ready)
        try:
            [described] = client.describe_topics([name])
        finally:
            client.close()
        assert len(described["partitions"]) == 2
    finally:
        kafka.delete_topics(kafka_ready, [name])
    kafka.delete_topics(kafka_ready, [name])  # deleting a missing topic is not an error


def test_created_topics_carry_the_retention_of_the_settings(
    kafka_ready: Settings, make_group_id: Callable[[], str]
) -> None:
    base = make_group_id().replace("test-group", "test.retention")
    topics = kafka_ready.topics.model_copy(
        update={"review": f"{base}.review", "dlq": f"{base}.dlq", "images": f"{base}.images"}
    )
    limits = kafka_ready.kafka.model_copy(update={"review_retention_ms": 3_600_000})
    settings = kafka_ready.model_copy(update={"topics": topics, "kafka": limits})
    names = [topics.review, topics.dlq, topics.images]
    try:
        assert sorted(kafka.ensure_topics(settings, names, partitions=1)) == sorted(names)
        client = kafka.admin(settings)
        try:
            described = client.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
            )["topic"]
        finally:
            client.close()
        assert described[topics.review]["retention.ms"]["value"] == "3600000"
        assert described[topics.dlq]["retention.ms"]["value"] == str(14 * 24 * 3600 * 1000)
        # The images topic is not given one: it keeps whatever the broker's default is.
        own = described[topics.images].get("retention.ms", {}).get("config_source")
        assert own != "DYNAMIC_TOPIC_CONFIG"
    finally:
        kafka.delete_topics(settings, names)


def test_dev_up_created_the_design_topics(kafka_ready: Settings) -> None:
    client = kafka.admin(kafka_ready)
    try:
        existing = set(client.list_topics())
    finally:
        client.close()
    assert set(kafka_ready.topics.all()) <= existing


def test_unreachable_broker_is_a_clear_error() -> None:
    settings = Settings(kafka={"bootstrap_servers": "127.0.0.1:1"})  # type: ignore[arg-type]
    with pytest.raises(kafka.KafkaUnavailable, match=r"127\.0\.0\.1:1 .*aigis dev status"):
        kafka.admin(settings, api_version_auto_timeout_ms=500)


def test_a_tail_to_the_end_reads_what_was_committed_and_stops_there(
    kafka_ready: Settings, make_topic: Callable[..., str], group_id: str
) -> None:
    """``to_end``: committed transactions and their markers are read past, an aborted one is
    skipped, and the tail ends there; a transaction still open holds it up until it commits."""
    from worker.tail import tail

    topic = make_topic(partitions=3)
    settings = kafka_ready.model_copy(
        update={"topics": kafka_ready.topics.model_copy(update={"verdicts": topic})}
    )
    tx = kafka.producer(kafka_ready, transactional_id=f"{group_id}-tx")
    try:
        for outcome in ("commit", "abort", "commit"):
            tx.begin_transaction()
            for i in range(4):
                tx.send(topic, key=f"{outcome}-{i}".encode(), value=b"{}")
            tx.flush(timeout=10)
            if outcome == "commit":
                tx.commit_transaction()
            else:
                tx.abort_transaction()
    finally:
        tx.close()
    started = time.monotonic()
    read = list(tail(settings, "verdicts", from_beginning=True, to_end=True))
    assert len(read) == 8
    assert time.monotonic() - started < 10
    # A transaction open when the tail begins is waited for, then read.
    tx = kafka.producer(kafka_ready, transactional_id=f"{group_id}-tx")
    try:
        tx.begin_transaction()
        tx.send(topic, key=b"late", value=b"{}")
        tx.flush(timeout=10)
        threading.Timer(1.0, tx.commit_transaction).start()
        read = list(tail(settings, "verdicts", from_beginning=True, to_end=True))
    finally:
        time.sleep(1.5)
        tx.close()
    assert len(read) == 9
    # An empty topic's tail ends at once.
    empty = kafka_ready.model_copy(
        update={"topics": kafka_ready.topics.model_copy(update={"verdicts": make_topic()})}
    )
    assert list(tail(empty, "verdicts", from_beginning=True, to_end=True)) == []

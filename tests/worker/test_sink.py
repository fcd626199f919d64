"""``aigis sink`` against the real Kafka: dedupe, review overrides, DLQ, and crash safety."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from PIL import Image

from schemas.codec import decode, encode
from schemas.messages import DeadLetter, PseudoLabel, ReviewDecision
from schemas.settings import Settings
from training.labelstore import LabelStore
from training.labelstore.fs import StoreFS
from training.labelstore.store import COMMITS, SHARDS
from worker import kafka
from worker.sink import run_sink

pytestmark = pytest.mark.integration

AIGIS = str(Path(sys.executable).with_name("aigis"))


def png(seed: int) -> bytes:
    """A small PNG that differs for every seed."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (seed % 256, (seed // 256) % 256, 7)).save(buffer, format="PNG")
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pseudo_label(
    image: bytes, *, confidence: float = 0.9, label_a: int = 1, version: str = "1"
) -> PseudoLabel:
    return PseudoLabel(
        image_b64=base64.b64encode(image).decode(),
        image_sha256=sha(image),
        label_a=label_a,  # type: ignore[arg-type]
        label_b=2 if label_a else 0,
        confidence_a=confidence,
        confidence_b=confidence,
        caption="a test image",
        event_id=f"e-{sha(image)[:12]}",
        model_name="detector",
        model_version=version,
    )


def review_decision(image: bytes, *, label_a: int, label_b: int) -> ReviewDecision:
    return ReviewDecision(
        image_b64=base64.b64encode(image).decode(),
        image_sha256=sha(image),
        label_a=label_a,  # type: ignore[arg-type]
        label_b=label_b,
        reviewer="tester",
    )


def publish(settings: Settings, topic: str, messages: list[PseudoLabel | ReviewDecision]) -> None:
    producer = kafka.producer(settings)
    try:
        for message in messages:
            producer.send(topic, value=encode(message), key=message.image_sha256.encode())
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)


def publish_raw(settings: Settings, topic: str, values: list[bytes]) -> None:
    producer = kafka.producer(settings)
    try:
        for value in values:
            producer.send(topic, value=value, key=b"raw")
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)


def read_all(settings: Settings, topic: str, expected: int, timeout_s: float = 20.0) -> list[bytes]:
    """The values on every partition of ``topic``, once ``expected`` are there (or the timeout)."""
    consumer: KafkaConsumer = kafka.consumer(settings, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while len(values) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=300).values():
                values.extend(r.value for r in records)
        return values
    finally:
        consumer.close(autocommit=False)


@pytest.fixture
def sink_settings(
    isolated_settings: Settings, tmp_path: Path, make_group_id: Callable[[], str]
) -> Settings:
    store = isolated_settings.store.model_copy(
        update={
            "url": str(tmp_path / "labels"),
            "group_id": make_group_id(),
            "keep_image_bytes": True,  # opted in: the tests read the kept bytes back
            "flush_records": 8,
            "flush_interval_s": 0.3,
            "compact_after": 3,
            # A killed sink's partitions go to its restart after this (the broker's minimum).
            "session_timeout_ms": 6_000,
            "metrics_port": 0,  # sinks of several tests and stacks share this machine
        }
    )
    return isolated_settings.model_copy(update={"store": store})


def sink_env(settings: Settings, **store: str) -> dict[str, str]:
    """The environment of an ``aigis sink`` subprocess reading ``settings``' topics and store."""
    env = {
        **os.environ,
        "AIGIS_STORE__URL": str(settings.store.url),
        "AIGIS_STORE__GROUP_ID": settings.store.group_id,
        "AIGIS_STORE__KEEP_IMAGE_BYTES": str(settings.store.keep_image_bytes).lower(),
        "AIGIS_STORE__METRICS_PORT": str(settings.store.metrics_port),
        "AIGIS_TOPICS__PSEUDO_LABELS": settings.topics.pseudo_labels,
        "AIGIS_TOPICS__REVIEW_DECISIONS": settings.topics.review_decisions,
        "AIGIS_TOPICS__DLQ": settings.topics.dlq,
        "AIGIS_LOG_FORMAT": "json",
    }
    env.update({f"AIGIS_STORE__{name.upper()}": value for name, value in store.items()})
    return env


def appended(store: LabelStore) -> int:
    return sum(commit.kind == "append" for commit in store.commits())


def run_until_idle(settings: Settings, idle_s: float = 1.5) -> None:
    run_sink(settings, threading.Event(), idle_exit_s=idle_s)


def test_the_sink_stores_one_label_per_image_and_a_review_overrides(
    sink_settings: Settings,
) -> None:
    topics = sink_settings.topics
    images = [png(i) for i in range(12)]
    redelivered = [pseudo_label(image, confidence=0.85) for image in images[:4]]
    surer = pseudo_label(images[4], confidence=0.99, label_a=0)
    publish(sink_settings, topics.pseudo_labels, [pseudo_label(i) for i in images])
    publish(sink_settings, topics.pseudo_labels, [*redelivered, surer])
    publish(
        sink_settings, topics.review_decisions, [review_decision(images[1], label_a=0, label_b=0)]
    )
    lying = pseudo_label(images[5]).model_copy(update={"image_sha256": "0" * 64})
    publish_raw(
        sink_settings, topics.pseudo_labels, [b"not json", lying.model_dump_json().encode()]
    )

    run_until_idle(sink_settings)

    store = LabelStore.from_settings(sink_settings)
    rows = {r["image_sha256"]: r for r in store.read().to_pylist()}
    assert set(rows) == {sha(i) for i in images}
    assert (rows[sha(images[1])]["origin"], rows[sha(images[1])]["label_a"]) == ("human", 0)
    assert (rows[sha(images[4])]["label_a"], rows[sha(images[4])]["confidence"]) == (
        0,
        pytest.approx(0.99),
    )
    assert all(
        store.image_bytes(r["image_blob"], None, sha256=sha(images[0])) == images[0]
        for r in [rows[sha(images[0])]]
    )
    letters = [decode(DeadLetter, v) for v in read_all(sink_settings, topics.dlq, expected=2)]
    assert sorted(letter.reason for letter in letters) == ["image_hash_mismatch", "not_json"]
    assert {letter.topic for letter in letters} == {topics.pseudo_labels}

    assert any(commit.kind == "compact" for commit in store.commits())
    # Offsets were committed: the same group finds nothing new and writes no commit.
    commits = len(store.commits())
    run_until_idle(sink_settings, idle_s=1.0)
    assert len(store.commits()) == commits


def test_a_crash_between_shard_and_commit_is_invisible_and_recovered(
    sink_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = [png(100 + i) for i in range(20)]
    publish(sink_settings, sink_settings.topics.pseudo_labels, [pseudo_label(i) for i in images])
    store = LabelStore.from_settings(sink_settings)
    real_write = StoreFS.write_atomic
    commits_written = 0

    class Crash(BaseException):
        pass

    def crash_on_second_commit(self: StoreFS, relative: str, data: bytes) -> None:
        nonlocal commits_written
        if relative.startswith(COMMITS):
            commits_written += 1
            if commits_written == 2:
                raise Crash  # the process dies after its shard is written, before its commit
        real_write(self, relative, data)

    monkeypatch.setattr(StoreFS, "write_atomic", crash_on_second_commit)
    with pytest.raises(Crash):
        run_until_idle(sink_settings)
    monkeypatch.undo()

    shards = len(os.listdir(Path(store.url) / SHARDS))
    assert shards == 2  # one committed, one orphan
    assert store.read().num_rows == sink_settings.store.flush_records
    run_until_idle(sink_settings)
    assert sorted(store.read()["image_sha256"].to_pylist()) == sorted(sha(i) for i in images)


def test_a_sink_killed_mid_flush_leaves_a_readable_store_that_then_completes(
    sink_settings: Settings,
) -> None:
    images = [png(1000 + i) for i in range(300)]
    publish(sink_settings, sink_settings.topics.pseudo_labels, [pseudo_label(i) for i in images])
    env = sink_env(sink_settings, flush_records="10", session_timeout_ms="6000", compact_after="3")
    store = LabelStore.from_settings(sink_settings)
    process = subprocess.Popen(
        [AIGIS, "sink"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while appended(store) < 3 and time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()

    partial = store.read()
    assert 30 <= partial.num_rows < len(images)
    assert partial["image_sha256"].to_pylist() == sorted(set(partial["image_sha256"].to_pylist()))
    run_until_idle(sink_settings)
    assert sorted(store.read()["image_sha256"].to_pylist()) == sorted(sha(i) for i in images)


def test_sigterm_flushes_and_exits_cleanly(sink_settings: Settings) -> None:
    images = [png(2000 + i) for i in range(5)]
    publish(sink_settings, sink_settings.topics.pseudo_labels, [pseudo_label(i) for i in images])
    env = sink_env(sink_settings, flush_interval_s="3600")
    process = subprocess.Popen([AIGIS, "sink"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        # Wait until the records are buffered (read, not yet flushed: the interval is an hour).
        deadline = time.monotonic() + 60
        assert process.stderr is not None
        for line in process.stderr:
            if "partitions_assigned" in line or time.monotonic() > deadline:
                break
        time.sleep(2.0)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    store = LabelStore.from_settings(sink_settings)
    assert sorted(store.read()["image_sha256"].to_pylist()) == sorted(sha(i) for i in images)

"""The worker against real Kafka, Redis and TorchServe: verdicts, cache, routing, dead letters."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from schemas import Decision, ImageEvent
from schemas.settings import Settings
from serving.client.http import ServingClient
from serving.client.wire import ItemError
from tests.streams import (
    CountingClient,
    drain,
    events_for,
    publish_events,
    publish_raw,
    raw,
    run_worker,
)

pytestmark = pytest.mark.integration

Images = list[tuple[bytes, str | None]]


def metric(worker: object, name: str, **labels: str) -> float:
    value = worker.metrics.registry.get_sample_value(name, labels)  # type: ignore[attr-defined]
    return 0.0 if value is None else float(value)


def test_every_event_gets_one_verdict_and_a_replay_is_served_from_the_cache(
    worker_settings: Settings, smoke_images: Images
) -> None:
    images = smoke_images[:24]
    first = publish_events(worker_settings, events_for(images, "first"))
    client = CountingClient(worker_settings)
    worker, stats = run_worker(worker_settings, client=client)
    assert stats.verdicts == len(first)
    verdicts = drain(worker_settings, "verdicts", expect=len(first), finished=True)
    assert sorted(v.event_id for v in verdicts) == sorted(first)
    assert not any(v.cached for v in verdicts)
    assert client.items_sent == len(images)
    assert metric(worker, "aigis_worker_cache_misses_total") == len(images)
    assert metric(worker, "aigis_worker_events_in_total", topic=worker_settings.topics.images) == 24

    # The same images again, as new events: answered from the cache, TorchServe never asked.
    again = publish_events(worker_settings, events_for(images, "again"))
    client.items_sent = 0
    worker, stats = run_worker(worker_settings, client=client)
    assert client.items_sent == 0
    assert metric(worker, "aigis_worker_cache_hits_total") == len(images)
    replayed = [
        v
        for v in drain(worker_settings, "verdicts", expect=48, finished=True)
        if v.event_id.startswith("again")
    ]
    assert sorted(v.event_id for v in replayed) == sorted(again)
    assert all(v.cached for v in replayed)
    by_hash = {v.image_sha256: v.p_ai for v in verdicts}
    assert all(by_hash[v.image_sha256] == v.p_ai for v in replayed)
    client.close()


def test_a_new_model_version_in_the_namespace_is_never_answered_from_old_entries(
    worker_settings: Settings, smoke_images: Images, redis_client: object
) -> None:
    images = smoke_images[24:30]
    publish_events(worker_settings, events_for(images, "v1"))
    run_worker(worker_settings)
    # Promotion writes the namespace: lookups now go to version "2", which has no entries.
    redis_client.set(worker_settings.redis.namespace_key, "2")  # type: ignore[attr-defined]
    publish_events(worker_settings, events_for(images, "after"))
    client = CountingClient(worker_settings)
    run_worker(worker_settings, client=client)
    client.close()
    after = [
        v
        for v in drain(worker_settings, "verdicts", expect=12, finished=True)
        if v.event_id[:5] == "after"
    ]
    assert len(after) == len(images)
    assert not any(v.cached for v in after)
    assert client.items_sent == len(images)


def test_routing_follows_the_thresholds(worker_settings: Settings, smoke_images: Images) -> None:
    images = smoke_images[30:60]
    # The tiny model is untrained: put the bands inside the spread of its answers.
    with ServingClient(worker_settings.serving, key_file=worker_settings.serving_key_file) as c:
        p_ai = sorted(r.p_ai for r in c.predict_many(images, request_items=8, max_in_flight=2))
    low, high = p_ai[len(p_ai) // 3], p_ai[2 * len(p_ai) // 3]
    bands = worker_settings.worker.model_copy(
        update={
            "human_threshold": low,
            "ai_threshold": high,
            "pseudo_label_confidence": 0.0,
            "generator_min_confidence": 0.0,
        }
    )
    settings = worker_settings.model_copy(update={"worker": bands})
    ids = publish_events(settings, events_for(images, "route"))
    run_worker(settings)
    verdicts = drain(settings, "verdicts", expect=len(ids), finished=True)
    assert len(verdicts) == len(ids)
    for v in verdicts:
        expected = (
            Decision.AI_GENERATED
            if v.p_ai >= high
            else Decision.HUMAN
            if v.p_ai <= low
            else Decision.NEEDS_REVIEW
        )
        assert v.decision is expected
        assert (v.generator == "real") == (v.decision is Decision.HUMAN)
    review = {v.event_id for v in verdicts if v.decision is Decision.NEEDS_REVIEW}
    confident = {v.event_id for v in verdicts if v.decision is not Decision.NEEDS_REVIEW}
    assert review
    assert confident
    items = drain(settings, "review", expect=len(review), finished=True)
    assert {r.verdict.event_id for r in items} == review
    assert all(r.image_b64 and r.caption is not None for r in items)
    labels = drain(settings, "pseudo-labels", expect=len(confident), finished=True)
    assert {p.event_id for p in labels} == confident
    by_id = {v.event_id: v for v in verdicts}
    for p in labels:
        assert p.label_a == (by_id[p.event_id].decision is Decision.AI_GENERATED)
        assert p.image_sha256 == by_id[p.event_id].image_sha256


def _bomb_png() -> bytes:
    """A valid PNG header declaring 20000 x 20000 pixels, with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 20_000, 20_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _noise_jpeg(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((side, side), 60).convert("RGB").save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def test_each_kind_of_poison_reaches_the_dlq_and_good_events_around_it_are_scored(
    worker_settings: Settings, smoke_images: Images, tmp_path: Path
) -> None:
    limited = worker_settings.worker.model_copy(update={"max_image_bytes": 150_000})
    settings = worker_settings.model_copy(update={"worker": limited})
    good = events_for(smoke_images[60:66], "good")
    big = tmp_path / "big.jpg"
    big.write_bytes(_noise_jpeg(600))
    assert big.stat().st_size > 150_000
    jpeg = smoke_images[0][0]
    valid = json.loads(raw(good[0]))
    poison: dict[str, bytes] = {
        "not_json": b"\xff{ not json",
        "unsupported_schema_version": json.dumps({**valid, "schema_version": 3}).encode(),
        "bad_base64": json.dumps({**valid, "image_b64": "!!not*base64!!"}).encode(),
        "undecodable_image": raw(ImageEvent.inline("p-text", b"just some text, not an image")),
        "truncated_image": raw(ImageEvent.inline("p-trunc", jpeg[: len(jpeg) // 2])),
        "decompression_bomb": raw(ImageEvent.inline("p-bomb", _bomb_png())),
        "image_too_large": raw(ImageEvent(event_id="p-big", image_uri=big.as_uri())),
        "unreachable_uri": raw(
            ImageEvent(event_id="p-gone", image_uri=(tmp_path / "no-such.png").as_uri())
        ),
        "uri_not_allowed": raw(ImageEvent(event_id="p-shadow", image_uri="file:///etc/shadow")),
    }
    values: list[bytes] = []
    for i, value in enumerate(poison.values()):
        values += [raw(good[i % len(good)].model_copy(update={"event_id": f"good-{i}"})), value]
    publish_raw(settings, values)
    run_worker(settings)

    letters = drain(settings, "dlq", expect=len(poison), finished=True)
    assert sorted(d.reason for d in letters) == sorted(poison)
    by_reason = {d.reason: d for d in letters}
    for reason, value in poison.items():
        letter = by_reason[reason]
        assert letter.original_value() == value, reason
        assert letter.topic == settings.topics.images
        assert base64.b64decode(letter.original_key_b64 or "").startswith(b"raw-")
    # What a producer reads in a dead letter names neither the worker's files nor its errors.
    for reason in ("unreachable_uri", "uri_not_allowed"):
        assert str(tmp_path) not in by_reason[reason].detail
        assert "shadow" not in by_reason[reason].detail
        assert "No such file" not in by_reason[reason].detail
    verdicts = drain(settings, "verdicts", expect=len(poison), finished=True)
    assert sorted(v.event_id for v in verdicts) == sorted(f"good-{i}" for i in range(len(poison)))


class FailsOnOneImage(ServingClient):
    """The real client to the real server, except that the server's answer for one image is
    replaced by the failure TorchServe gives when a forward pass dies on it."""

    def __init__(self, settings: Settings, bad: bytes) -> None:
        super().__init__(settings.serving, key_file=settings.serving_key_file)
        self.bad = bad

    def predict_many(self, items: Any, **kwargs: Any) -> Any:
        answers = super().predict_many(items, **kwargs)
        return [
            ItemError("prediction_failed", "the forward pass failed") if image == self.bad else a
            for (image, _caption), a in zip(items, answers, strict=True)
        ]


def test_an_image_the_server_keeps_failing_on_is_set_aside_and_its_batch_goes_on(
    worker_settings: Settings, smoke_images: Images
) -> None:
    events = events_for(smoke_images[40:52], "srv")
    ids = publish_events(worker_settings, events)
    bad = smoke_images[45][0]
    worker, stats = run_worker(worker_settings, client=FailsOnOneImage(worker_settings, bad))

    letters = drain(worker_settings, "dlq", expect=1, finished=True)
    assert [(d.reason, d.event_id) for d in letters] == [("unscorable_image", None)]
    assert letters[0].original_value() == raw(events[5])
    verdicts = drain(worker_settings, "verdicts", expect=len(ids) - 1, finished=True)
    assert sorted(v.event_id for v in verdicts) == sorted(ids[:5] + ids[6:])
    assert stats.dead_letters == 1
    assert metric(worker, "aigis_worker_set_aside_total", reason="unscorable_image") == 1

"""Decisions made without the model, through the real worker (Kafka, Redis, TorchServe with the
tiny model): a reviewer's label answers the near-duplicates of the labelled image, and a
verified manifest can keep its image from the model altogether."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from prometheus_client import CollectorRegistry

from aigis import samples as art
from aigis.console.db import open_database
from aigis.console.metrics import ConsoleMetrics
from aigis.console.outbox import OutboxPublisher
from aigis.console.queue import Answer, ReviewQueue
from schemas import Decision, ImageEvent
from schemas.settings import Settings
from tests.streams import CountingClient, drain, publish_events, run_worker
from worker.cache import sha256_hex
from worker.neardup import pdq

pytestmark = pytest.mark.integration


def _jpeg(image: Image.Image, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", **options)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def _distance(a: bytes, b: bytes) -> int:
    side = Settings().evidence.hash_side
    first, second = pdq(a, side), pdq(b, side)
    assert first is not None
    assert second is not None
    return min(
        (int.from_bytes(first.hash) ^ int.from_bytes(h)).bit_count() for h in second.orientations
    )


def test_a_reviewers_label_answers_the_near_duplicates_of_the_labelled_image(
    worker_settings: Settings, redis_prefix: str, tmp_path: Path
) -> None:
    s = worker_settings
    settings = s.model_copy(
        update={
            # The tiny model is untrained: bands that send every image to review.
            "worker": s.worker.model_copy(update={"human_threshold": 0.0, "ai_threshold": 1.0}),
            "redis": s.redis.model_copy(update={"override_prefix": f"{redis_prefix}:override"}),
            "review": s.review.model_copy(update={"publish_delay_s": 0.0}),
            "evidence": s.evidence.model_copy(update={"reuse_distance": 6}),
        }
    )
    original = art.photo(22, (256, 256))
    first = _jpeg(original, quality=95)
    publish_events(settings, [ImageEvent.inline("original", first)])
    run_worker(settings)
    (item,) = drain(settings, "review", expect=1, finished=True)
    assert item.verdict.decision is Decision.NEEDS_REVIEW

    # A reviewer labels it in the console, which publishes the decision and writes its override.
    engine = open_database(f"sqlite:///{tmp_path / 'console.db'}")
    queue = ReviewQueue(engine, settings)
    assert queue.add(item)
    leased = queue.lease("ann")
    assert leased is not None
    queue.decide(leased.id, "ann", Answer("sdxl"))
    publisher = OutboxPublisher(engine, settings, ConsoleMetrics(CollectorRegistry(), lambda: 0))
    try:
        assert publisher.step() == 1
    finally:
        publisher.close()

    copies = {
        "q60": _jpeg(original, quality=60),
        "mirror": _jpeg(original.transpose(Image.Transpose.FLIP_LEFT_RIGHT), quality=90),
        "half": _png(original.resize((128, 128))),
    }
    unrelated = _jpeg(art.photo(31, (256, 256)), quality=95)
    publish_events(
        settings,
        [ImageEvent.inline(k, v) for k, v in copies.items()]
        + [ImageEvent.inline("unrelated", unrelated)],
    )
    client = CountingClient(settings)
    run_worker(settings, client=client)
    client.close()
    got = {
        v.event_id: v for v in drain(settings, "verdicts", expect=2 + len(copies), finished=True)
    }

    answered = 0
    for name, data in copies.items():
        v, distance = got[name], _distance(first, data)
        assert v.image_sha256 == sha256_hex(data), name
        if distance <= settings.evidence.reuse_distance:
            answered += 1
            assert (v.decision, v.generator, v.decided_by) == (
                Decision.AI_GENERATED,
                "sdxl",
                "human",
            ), name
            assert v.p_ai == 1.0
            assert v.near_duplicate_of is not None
            assert v.near_duplicate_of.image_sha256 == sha256_hex(first)
            assert v.near_duplicate_of.distance == distance
        else:  # scored, and the reviewer's label is its evidence
            assert v.decided_by == "model", name
            assert v.near_duplicate_of is None
            assert [(e.kind, e.generator) for e in v.evidence] == [("near_duplicate", "sdxl")]
    assert 0 < answered < len(copies)
    assert got["unrelated"].decided_by == "model"
    assert not got["unrelated"].evidence
    assert client.items_sent == len(copies) - answered + 1


def test_a_verified_manifest_keeps_its_image_from_the_model_when_the_setting_says_so(
    worker_settings: Settings, tmp_path: Path
) -> None:
    cred = art.credential()
    anchors = tmp_path / "anchors.pem"
    anchors.write_text(cred.root_pem)
    s = worker_settings
    settings = s.model_copy(
        update={
            "evidence": s.evidence.model_copy(
                update={"trust_anchors_file": anchors, "skip_model_when_proven": True}
            )
        }
    )
    trusted = art.signed_jpeg(cred, art.photo(40))
    images = {
        "trusted": trusted,
        "unlisted": art.signed_jpeg(art.credential(), art.photo(41)),
        "plain": art.jpeg(art.photo(42)),
    }
    publish_events(settings, [ImageEvent.inline(k, v) for k, v in images.items()])
    client = CountingClient(settings)
    run_worker(settings, client=client)
    client.close()
    assert client.items_sent == 2  # the unlisted signature and the plain photo only

    # Not cached (the model never scored it): sent again, it is read again, still unscored.
    publish_events(settings, [ImageEvent.inline("trusted-again", trusted)])
    client = CountingClient(settings)
    run_worker(settings, client=client)
    client.close()
    assert client.items_sent == 0
    got = {
        v.event_id: v for v in drain(settings, "verdicts", expect=len(images) + 1, finished=True)
    }
    for name in ("trusted", "trusted-again"):
        v = got[name]
        assert (v.decision, v.decided_by, v.generator) == (
            Decision.AI_GENERATED,
            "provenance",
            "dalle3",
        ), name
        assert (v.p_ai, v.generator_probs, v.cached) == (1.0, {}, False)
        assert [(e.kind, e.strength) for e in v.evidence] == [("c2pa", "verified")]
    assert got["unlisted"].decided_by != "provenance"
    assert got["unlisted"].generator_probs
    assert got["plain"].generator_probs

"""Human review labels answer their image, and its near-duplicates, before the cache and the
model (real Redis)."""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
import redis
from PIL import Image

from aigis import samples as art
from schemas import ImageEvent, Verdict, decode, encode
from schemas.overrides import HumanLabel, override_key
from schemas.settings import Settings
from serving.client.http import ModelInfo
from worker.cache import VerdictCache
from worker.evidence.stage import EvidenceStage
from worker.fetch import Fetcher
from worker.pipeline import Pipeline
from worker.runtime.batch import Batch
from worker.score import Score
from worker.scorer import Rejected

pytestmark = pytest.mark.integration

GENERATORS = ("real", "sd21", "sdxl")


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class ModelNotToBeAsked:
    """The served model as the pipeline sees it; counts what it was asked to score."""

    def __init__(self) -> None:
        self.scored = 0

    def model(self) -> ModelInfo:
        return ModelInfo("detector", "7", "fused", GENERATORS, reads_caption=True)

    def begin(self) -> AnsweredAtOnce:
        return AnsweredAtOnce(self)

    def score(
        self, images: Sequence[bytes], captions: Sequence[str | None]
    ) -> list[Score | Rejected]:
        self.scored += len(images)
        probs = {"real": 0.5, "sd21": 0.25, "sdxl": 0.25}
        return [Score(0.5, probs, 0.5, 0.5, "detector", "7") for _ in images]


class AnsweredAtOnce(contextlib.nullcontext["AnsweredAtOnce"]):
    """A batch's scoring (``worker.scorer.Scoring``) by :class:`ModelNotToBeAsked`."""

    started = None

    def __init__(self, model: ModelNotToBeAsked) -> None:
        super().__init__(self)
        self.model, self.images = model, 0

    def add(self, images: Sequence[bytes], captions: Sequence[str | None]) -> None:
        self.images += len(images)

    def answers(self) -> list[Score | Rejected]:
        return self.model.score([b""] * self.images, [None] * self.images)


def png(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (seed, 3, 200)).save(out, format="PNG")
    return out.getvalue()


def run(
    settings: Settings,
    scorer: ModelNotToBeAsked,
    events: list[ImageEvent],
    *,
    evidence: bool = False,
) -> list[Verdict]:
    records = [Record("t", 0, i, e.event_id.encode(), encode(e)) for i, e in enumerate(events)]
    fetcher = Fetcher(settings.fetch, settings.worker)
    cache = VerdictCache(settings.redis)
    stage = EvidenceStage(settings, cache) if evidence else None
    try:
        pipeline = Pipeline(settings, fetcher, cache, scorer, stage)  # type: ignore[arg-type]
        done = pipeline.process(Batch(records))
    finally:
        if stage is not None:
            stage.close()
        fetcher.close()
        cache.close()
    verdicts = [o for o in done.outputs if o.topic == settings.topics.verdicts]
    assert not [o for o in done.outputs if o.topic == settings.topics.dlq]
    return [decode(Verdict, o.value) for o in verdicts]


def isolated(settings: Settings, redis_prefix: str) -> Settings:
    redis_settings = settings.redis.model_copy(
        update={"key_prefix": f"{redis_prefix}:v", "override_prefix": f"{redis_prefix}:o"}
    )
    return settings.model_copy(update={"redis": redis_settings})


def test_a_labelled_image_gets_the_humans_label_whatever_the_cache_and_model_say(
    settings: Settings, redis_ready: Settings, redis_client: redis.Redis, redis_prefix: str
) -> None:
    local = isolated(settings, redis_prefix)
    redis_settings = local.redis
    labelled, other = png(1), png(2)
    sha = hashlib.sha256(labelled).hexdigest()
    human = HumanLabel(
        image_sha256=sha, label_a=1, generator="sdxl", decision_id="d-1", reviewer="ann"
    )
    redis_client.set(override_key(redis_settings.override_prefix, sha), human.to_json())

    scorer = ModelNotToBeAsked()
    verdicts = run(
        local,
        scorer,
        [ImageEvent.inline("e-1", labelled, caption="x"), ImageEvent.inline("e-2", other)],
    )
    assert scorer.scored == 1  # only the image nobody labelled
    by_id = {v.event_id: v for v in verdicts}
    assert by_id["e-1"].decided_by == "human"
    assert by_id["e-1"].decision.value == "ai_generated"
    assert by_id["e-1"].generator == "sdxl"
    assert by_id["e-1"].p_ai == 1.0
    assert by_id["e-2"].decided_by == "model"
    assert by_id["e-2"].decision.value == "needs_review"

    # Cached now, the unlabelled image is answered from the cache; a garbled label is no label.
    redis_client.set(override_key(redis_settings.override_prefix, sha), b"{not json")
    scorer.scored = 0
    verdicts = run(local, scorer, [ImageEvent.inline("e-3", labelled, caption="x")])
    assert scorer.scored == 1
    assert verdicts[0].decided_by == "model"


def test_a_near_duplicate_of_a_labelled_image_gets_the_label_and_a_garbled_label_is_none(
    settings: Settings, redis_ready: Settings, redis_client: redis.Redis, redis_prefix: str
) -> None:
    local = isolated(settings, redis_prefix)
    original = art.photo(6, (256, 256))
    first, copy = art.jpeg(original, quality=95), art.jpeg(original, quality=60)
    sha = hashlib.sha256(first).hexdigest()
    scorer = ModelNotToBeAsked()
    run(local, scorer, [ImageEvent.inline("e-1", first)], evidence=True)  # scored, hash kept
    key = override_key(local.redis.override_prefix, sha)

    # A garbled label of the matched image is no label: the copy is answered from its score.
    redis_client.set(key, b"{not json")
    (verdict,) = run(local, scorer, [ImageEvent.inline("e-2", copy)], evidence=True)
    assert (verdict.decided_by, verdict.cached) == ("model", True)
    assert verdict.near_duplicate_of is not None
    assert verdict.near_duplicate_of.image_sha256 == sha

    label = HumanLabel(
        image_sha256=sha, label_a=0, generator="real", decision_id="d-2", reviewer="ann"
    )
    redis_client.set(key, label.to_json())
    (verdict,) = run(local, scorer, [ImageEvent.inline("e-3", copy)], evidence=True)
    assert (verdict.decided_by, verdict.decision.value, verdict.generator) == (
        "human",
        "human",
        "real",
    )
    assert verdict.image_sha256 == hashlib.sha256(copy).hexdigest()
    assert verdict.near_duplicate_of is not None
    assert verdict.near_duplicate_of.image_sha256 == sha
    assert scorer.scored == 1  # the first image only

"""Decision bands, generator naming, pseudo-label selection and topic routing."""

from __future__ import annotations

import base64
from collections import namedtuple

import pytest

from schemas import DeadLetter, Decision, ImageEvent, PseudoLabel, ReviewItem, Timings, decode
from schemas.decision import decide, name_generator
from schemas.messages import Evidence, NearDuplicate
from schemas.overrides import HumanLabel
from schemas.settings import Settings, TopicSettings, WorkerSettings
from schemas.settings_evidence import EvidenceSettings
from worker.route import build_verdict, human_verdict, proven_verdict, route
from worker.runtime.checkpoint import dead_letter
from worker.score import Score

pytestmark = pytest.mark.unit

SHA = "cd" * 32
CT2 = ("real", "sd21", "sdxl", "sd3", "dalle3", "midjourney6")
SETTINGS = WorkerSettings()
FULL = Settings(worker=SETTINGS)
TOPICS = TopicSettings()
Rec = namedtuple("Rec", "topic partition offset key value")


def score(
    p_ai: float, top: str = "sdxl", top_p: float = 0.9, conf_a: float = 0.95, conf_b: float = 0.9
) -> Score:
    rest = (1 - top_p) / (len(CT2) - 1)
    probs = {name: (top_p if name == top else rest) for name in CT2}
    return Score(p_ai, probs, conf_a, conf_b, "detector", "3")


def event(**fields: object) -> ImageEvent:
    return ImageEvent.inline("ev-1", b"\x89PNG fake", caption="a cat", **fields)


@pytest.mark.parametrize(
    ("p_ai", "expected"),
    [
        (0.8, Decision.AI_GENERATED),
        (0.99, Decision.AI_GENERATED),
        (0.2, Decision.HUMAN),
        (0.0, Decision.HUMAN),
        (0.5, Decision.NEEDS_REVIEW),
        (0.79, Decision.NEEDS_REVIEW),
        (0.21, Decision.NEEDS_REVIEW),
    ],
)
def test_bands_are_the_workers_own(p_ai: float, expected: Decision) -> None:
    assert decide(p_ai, SETTINGS) is expected


def test_bands_follow_the_settings() -> None:
    narrow = WorkerSettings(ai_threshold=0.6, human_threshold=0.4)
    assert decide(0.65, narrow) is Decision.AI_GENERATED
    assert decide(0.35, narrow) is Decision.HUMAN


def test_generator_is_real_for_humans_and_abstains_when_unsure() -> None:
    probs = score(0.9, top="sd3", top_p=0.7).generator_probs
    assert name_generator(Decision.HUMAN, 0.9, probs, SETTINGS) == "real"
    assert name_generator(Decision.AI_GENERATED, 0.9, probs, SETTINGS) == "sd3"
    unsure = score(0.9, top="sd3", top_p=0.3).generator_probs
    assert name_generator(Decision.AI_GENERATED, 0.9, unsure, SETTINGS) == "unknown"
    # "real" never names the generator of an image judged AI-generated.
    realish = score(0.9, top="real", top_p=0.9).generator_probs
    assert name_generator(Decision.AI_GENERATED, 0.9, realish, SETTINGS) == "unknown"


def test_needs_review_goes_to_the_review_topic_with_the_image() -> None:
    ev = event()
    verdict = build_verdict(ev, SHA, score(0.5), cached=False, timings=Timings(), settings=SETTINGS)
    outputs = route(verdict, ev, score(0.5), FULL)
    assert [o.topic for o in outputs] == [TOPICS.verdicts, TOPICS.review]
    review = decode(ReviewItem, outputs[1].value)
    assert review.verdict.event_id == "ev-1"
    assert review.caption == "a cat"
    assert review.image_b64 == ev.image_b64
    assert all(o.key == b"ev-1" for o in outputs)


def test_confident_verdicts_become_pseudo_labels_keyed_by_image_hash() -> None:
    ev = event(source="tenant-a")
    s = score(0.97, top="dalle3", top_p=0.9)
    verdict = build_verdict(ev, SHA, s, cached=False, timings=Timings(), settings=SETTINGS)
    outputs = route(verdict, ev, s, FULL)
    assert [o.topic for o in outputs] == [TOPICS.verdicts, TOPICS.pseudo_labels]
    assert outputs[1].key == SHA.encode()
    label = decode(PseudoLabel, outputs[1].value)
    assert (label.label_a, label.generators[label.label_b]) == (1, "dalle3")
    assert label.image_b64 == ev.image_b64
    assert label.image_uri is None
    assert label.source == "tenant-a"
    assert label.caption == "a cat"


def test_uri_events_make_pseudo_labels_by_uri() -> None:
    ev = ImageEvent(event_id="ev-2", image_uri="https://example.org/a.png")
    s = Score(
        0.02, {name: (0.95 if name == "real" else 0.01) for name in CT2}, 0.98, 0.95, "d", "3"
    )
    verdict = build_verdict(ev, SHA, s, cached=True, timings=Timings(), settings=SETTINGS)
    outputs = route(verdict, ev, s, FULL)
    label = decode(PseudoLabel, outputs[1].value)
    assert (label.label_a, label.label_b) == (0, 0)
    assert label.image_uri == "https://example.org/a.png"
    assert label.image_b64 is None


@pytest.mark.parametrize(
    "s",
    [
        score(0.97, conf_a=0.7),  # Task A not confident enough
        score(0.97, conf_b=0.7),  # Task B not confident enough
        score(0.97, top_p=0.3),  # generator abstains
    ],
)
def test_unconfident_verdicts_are_not_pseudo_labels(s: Score) -> None:
    ev = event()
    verdict = build_verdict(ev, SHA, s, cached=False, timings=Timings(), settings=SETTINGS)
    assert [o.topic for o in route(verdict, ev, s, FULL)] == [TOPICS.verdicts]


def test_dead_letters_keep_the_original_record() -> None:
    record = Rec("aigis.images", 3, 42, b"key-1", b"\x00not json")
    out = dead_letter(record, "not_json", "message is not UTF-8 JSON", FULL)
    assert (out.topic, out.key) == (TOPICS.dlq, b"key-1")
    letter = decode(DeadLetter, out.value)
    assert (letter.topic, letter.partition, letter.offset) == ("aigis.images", 3, 42)
    assert letter.original_value() == b"\x00not json"
    assert base64.b64decode(letter.original_key_b64 or "") == b"key-1"


def test_quality_samples_are_confident_verdicts_also_sent_to_review_at_their_sources_rate() -> None:
    worker = WorkerSettings(qa_sample_rate=0.25, qa_sample_rates={"strict": 1.0, "off": 0.0})
    settings = Settings(worker=worker)
    sampled = 0
    for i in range(400):
        ev = ImageEvent.inline(f"ev-{i}", b"\x89PNG fake", source="any")
        verdict = build_verdict(
            ev, SHA, score(0.95), cached=False, timings=Timings(), settings=worker
        )
        outputs = route(verdict, ev, score(0.95), settings)
        topics = [o.topic for o in outputs]
        if TOPICS.review in topics:
            sampled += 1
            item = decode(ReviewItem, outputs[topics.index(TOPICS.review)].value)
            assert item.qa_sample is True
            assert item.verdict.qa_sample is True
            assert item.verdict.decision is Decision.AI_GENERATED
            assert TOPICS.pseudo_labels in topics  # still a pseudo-label
        again = route(verdict, ev, score(0.95), settings)
        assert [o.topic for o in again] == topics  # the same choice on a retry
    assert 60 <= sampled <= 140  # about a quarter
    for source, expected in (("strict", 1), ("off", 0)):
        ev = ImageEvent.inline("ev-x", b"\x89PNG fake", source=source)
        verdict = build_verdict(
            ev, SHA, score(0.05), cached=False, timings=Timings(), settings=worker
        )
        topics = [o.topic for o in route(verdict, ev, score(0.05), settings)]
        assert topics.count(TOPICS.review) == expected
    # Uncertain verdicts go to review anyway, unflagged.
    ev = ImageEvent.inline("ev-y", b"\x89PNG fake", source="strict")
    verdict = build_verdict(ev, SHA, score(0.5), cached=False, timings=Timings(), settings=worker)
    (review,) = [o for o in route(verdict, ev, score(0.5), settings) if o.topic == TOPICS.review]
    assert decode(ReviewItem, review.value).qa_sample is None


def test_a_source_with_bands_of_its_own_is_decided_by_them_and_the_verdict_says_which() -> None:
    worker = WorkerSettings(bands_by_source={"strict": {"ai_threshold": 0.6}})
    strict = ImageEvent.inline("ev-s", b"\x89PNG fake", source="strict")
    other = ImageEvent.inline("ev-o", b"\x89PNG fake", source="other")
    verdict = build_verdict(
        strict, SHA, score(0.7), cached=False, timings=Timings(), settings=worker
    )
    assert verdict.decision is Decision.AI_GENERATED
    assert verdict.bands is not None
    assert (verdict.bands.ai_threshold, verdict.bands.human_threshold) == (0.6, 0.2)
    verdict = build_verdict(
        other, SHA, score(0.7), cached=False, timings=Timings(), settings=worker
    )
    assert verdict.decision is Decision.NEEDS_REVIEW
    assert verdict.bands is not None
    assert verdict.bands.ai_threshold == 0.8
    with pytest.raises(ValueError, match="bands_by_source"):
        WorkerSettings(bands_by_source={"bad": {"human_threshold": 0.9}})


def test_a_near_duplicate_of_a_labelled_image_is_the_humans_verdict_on_its_own_hash() -> None:
    label = HumanLabel(
        image_sha256="ab" * 32, label_a=0, generator="real", decision_id="d-1", reviewer="ann"
    )
    near = NearDuplicate(image_sha256="ab" * 32, distance=4)
    verdict = human_verdict(event(), SHA, label, ("detector", "3"), Timings(), near)
    assert (verdict.image_sha256, verdict.near_duplicate_of) == (SHA, near)
    assert (verdict.decision, verdict.generator, verdict.decided_by) == (
        Decision.HUMAN,
        "real",
        "human",
    )
    assert route(verdict, event(), None, FULL) == [route(verdict, event(), None, FULL)[0]]


def test_a_verdict_that_provenance_decided_without_the_model_says_so() -> None:
    verified = Evidence(kind="c2pa", value="v", generator="dalle3", strength="verified")
    policy = EvidenceSettings()
    verdict = proven_verdict(event(), SHA, [verified], ("detector", "3"), Timings(), policy)
    assert (verdict.decision, verdict.generator, verdict.decided_by) == (
        Decision.AI_GENERATED,
        "dalle3",
        "provenance",
    )
    assert (verdict.p_ai, verdict.generator_probs, verdict.cached) == (1.0, {}, False)
    assert [o.topic for o in route(verdict, event(), None, FULL)] == [TOPICS.verdicts]
    # Evidence that does not decide alone never makes such a verdict.
    signed = verified.model_copy(update={"strength": "signed"})
    with pytest.raises(ValueError, match="does not decide"):
        proven_verdict(event(), SHA, [signed], ("detector", "3"), Timings(), policy)
    with pytest.raises(ValueError, match="does not decide"):
        proven_verdict(
            event(),
            SHA,
            [verified],
            ("detector", "3"),
            Timings(),
            EvidenceSettings(provenance_decides=False),
        )

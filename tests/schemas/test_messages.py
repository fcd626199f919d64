"""Every message model: what it accepts, and each way it rejects input."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import ValidationError

from schemas import (
    DeadLetter,
    Decision,
    ImageEvent,
    PseudoLabel,
    ReviewDecision,
    ReviewItem,
    Timings,
    Verdict,
)
from schemas.limits import MAX_CAPTION_CHARS, MAX_ID_CHARS

pytestmark = pytest.mark.unit

SHA = "ab" * 32


class TestImageEvent:
    def test_inline_event_keeps_bytes(self, png_bytes: bytes) -> None:
        event = ImageEvent.inline("evt-1", png_bytes, caption="a red square", source="tenant-a")
        assert event.inline_bytes() == png_bytes
        assert event.image_uri is None
        assert event.schema_version == 2

    @pytest.mark.parametrize(
        "uri", ["file:///data/a.png", "https://cdn.example.com/a.jpg", "s3://bucket/key.png"]
    )
    def test_uri_event_for_each_allowed_scheme(self, uri: str) -> None:
        event = ImageEvent(event_id="evt-1", image_uri=uri)
        assert event.inline_bytes() is None

    def test_caption_is_optional(self, png_b64: str) -> None:
        assert ImageEvent(event_id="e", image_b64=png_b64).caption is None

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({}, "exactly one of image_b64 and image_uri"),
            ({"image_uri": "https://x/a.png", "image_b64": "AAAA"}, "exactly one"),
            ({"image_uri": "ftp://host/a.png"}, "scheme 'ftp' is not allowed"),
            ({"image_uri": "/plain/path.png"}, r"scheme '\(none\)' is not allowed"),
            ({"image_uri": "https:///a.png"}, "has no host"),
            ({"image_uri": "file://"}, "file URI has no path"),
            ({"image_b64": "not base64!"}, "not valid base64"),
            ({"image_b64": ""}, "inline image is empty"),
        ],
    )
    def test_rejects_bad_image(self, fields: dict[str, Any], message: str) -> None:
        with pytest.raises(ValidationError, match=message):
            ImageEvent(event_id="evt-1", **fields)

    @pytest.mark.parametrize(
        "event_id",
        ["", " leading-space", "has space", "-starts-with-dash", "x" * (MAX_ID_CHARS + 1)],
    )
    def test_rejects_bad_ids(self, event_id: str, png_b64: str) -> None:
        with pytest.raises(ValidationError, match="event_id"):
            ImageEvent(event_id=event_id, image_b64=png_b64)

    def test_rejects_long_caption(self, png_b64: str) -> None:
        with pytest.raises(ValidationError, match="caption"):
            ImageEvent(event_id="e", image_b64=png_b64, caption="x" * (MAX_CAPTION_CHARS + 1))

    def test_is_frozen_and_forbids_unknown_fields(self, png_b64: str) -> None:
        event = ImageEvent(event_id="e", image_b64=png_b64)
        with pytest.raises(ValidationError, match="frozen"):
            event.caption = "changed"  # type: ignore[misc]
        with pytest.raises(ValidationError, match="captoin"):
            ImageEvent(event_id="e", image_b64=png_b64, captoin="typo")  # type: ignore[call-arg]


class TestVerdict:
    def test_valid(self, verdict_fields: dict[str, Any]) -> None:
        verdict = Verdict(**verdict_fields)
        assert verdict.decision is Decision.AI_GENERATED
        assert verdict.cached is False
        assert verdict.timings == Timings()
        assert verdict.scored_at.tzinfo is not None

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("p_ai", 1.5),
            ("p_ai", -0.1),
            ("p_ai", float("nan")),
            ("image_sha256", "AB" * 32),
            ("image_sha256", "ab" * 31),
            ("decision", "maybe"),
            ("generator", ""),
            ("generator_probs", {"sdxl": 2.0}),
            ("model_version", ""),
        ],
    )
    def test_rejects_bad_field(
        self, verdict_fields: dict[str, Any], field: str, value: object
    ) -> None:
        with pytest.raises(ValidationError, match=field):
            Verdict(**{**verdict_fields, field: value})


class TestReviewItem:
    def test_carries_verdict_and_image(self, verdict_fields: dict[str, Any], png_b64: str) -> None:
        item = ReviewItem(verdict=Verdict(**verdict_fields), caption="c", image_b64=png_b64)
        assert item.verdict.event_id == "evt-1"

    def test_rejects_bad_uri_scheme(self, verdict_fields: dict[str, Any]) -> None:
        with pytest.raises(ValidationError, match="not allowed"):
            ReviewItem(verdict=Verdict(**verdict_fields), image_uri="gopher://x/y")


def _decision(**fields: Any) -> ReviewDecision:
    return ReviewDecision(
        **{"image_sha256": SHA, "image_uri": "s3://b/k.png", "reviewer": "alice", **fields}
    )


def _pseudo(**fields: Any) -> PseudoLabel:
    base = {
        "image_sha256": SHA,
        "image_uri": "s3://b/k.png",
        "confidence_a": 0.97,
        "confidence_b": 0.91,
        "event_id": "evt-1",
        "model_name": "detector",
        "model_version": "3",
    }
    return PseudoLabel(**{**base, **fields})


@pytest.mark.parametrize("build", [_decision, _pseudo], ids=["ReviewDecision", "PseudoLabel"])
class TestLabelConsistency:
    @pytest.mark.parametrize(("label_a", "label_b"), [(0, 0), (1, 1), (1, 5)])
    def test_consistent_labels(self, build: Any, label_a: int, label_b: int) -> None:
        record = build(label_a=label_a, label_b=label_b)
        assert (record.label_a, record.label_b) == (label_a, label_b)

    @pytest.mark.parametrize(
        ("label_a", "label_b", "message"),
        [
            (0, 2, "label_b must be 0 \\(real\\) exactly when label_a is 0"),
            (1, 0, "label_b must be 0 \\(real\\) exactly when label_a is 0"),
            (1, 6, "label_b 6 is outside 0..5"),
            (2, 1, "label_a"),
        ],
    )
    def test_inconsistent_labels(
        self, build: Any, label_a: int, label_b: int, message: str
    ) -> None:
        with pytest.raises(ValidationError, match=message):
            build(label_a=label_a, label_b=label_b)

    def test_generator_list_travels_with_the_label(self, build: Any) -> None:
        record = build(label_a=1, label_b=2, generators=("real", "flux", "imagen"))
        assert record.generators[record.label_b] == "imagen"
        with pytest.raises(ValidationError, match=r"outside 0\.\.1"):
            build(label_a=1, label_b=2, generators=("real", "flux"))


class TestPseudoLabel:
    def test_rejects_confidence_out_of_range(self) -> None:
        with pytest.raises(ValidationError, match="confidence_a"):
            _pseudo(label_a=1, label_b=1, confidence_a=1.01)


class TestDeadLetter:
    def test_keeps_original_bytes(self) -> None:
        raw = b"\xff\x00 not json"
        letter = DeadLetter(
            reason="not_json",
            detail="message is not UTF-8 JSON",
            topic="aigis.images",
            partition=3,
            offset=42,
            original_value_b64=base64.b64encode(raw).decode(),
        )
        assert letter.original_value() == raw

    @pytest.mark.parametrize(
        ("field", "value"), [("reason", "Not Snake"), ("reason", ""), ("offset", -1)]
    )
    def test_rejects_bad_field(self, field: str, value: object) -> None:
        fields: dict[str, Any] = {
            "reason": "not_json",
            "detail": "d",
            "topic": "aigis.images",
            "partition": 0,
            "offset": 0,
            "original_value_b64": "",
        }
        with pytest.raises(ValidationError, match=field):
            DeadLetter(**{**fields, field: value})

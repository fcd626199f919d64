"""encode/decode: round trips, and the reason code of every way a message can be rejected."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from schemas import (
    DeadLetter,
    ImageEvent,
    PseudoLabel,
    ReviewDecision,
    ReviewItem,
    SchemaError,
    Timings,
    Verdict,
    decode,
    encode,
)
from schemas.errors import AigisError
from schemas.limits import MAX_INLINE_IMAGE_BYTES
from schemas.messages import AppliedBands, Evidence, NearDuplicate

pytestmark = pytest.mark.unit

SHA = "cd" * 32


def _examples(png_b64: str, verdict_fields: dict[str, Any]) -> list[BaseModel]:
    verdict = Verdict(
        **verdict_fields,
        cached=True,
        timings=Timings(fetch_ms=1.5, serving_ms=20.0, total_ms=22.0, end_to_end_ms=40.0),
    )
    return [
        ImageEvent(
            event_id="evt-1",
            image_b64=png_b64,
            caption="a cat on a sofa",
            external_id="ext-9",
            source="tenant-a",
            produced_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        ),
        ImageEvent(event_id="evt-2", image_uri="s3://bucket/a.png"),
        verdict,
        ReviewItem(verdict=verdict, caption="a cat", image_uri="https://x.example/a.png"),
        ReviewDecision(image_sha256=SHA, image_b64=png_b64, label_a=1, label_b=4, reviewer="alice"),
        PseudoLabel(
            image_sha256=SHA,
            image_uri="file:///data/a.png",
            label_a=0,
            label_b=0,
            confidence_a=0.99,
            confidence_b=0.95,
            event_id="evt-1",
            model_name="detector",
            model_version="2",
        ),
        DeadLetter(
            reason="not_json",
            detail="message is not UTF-8 JSON",
            topic="aigis.images",
            partition=1,
            offset=7,
            original_key_b64=base64.b64encode(b"k").decode(),
            original_value_b64=base64.b64encode(b"\x00\x01").decode(),
        ),
    ]


def test_every_message_round_trips(png_b64: str, verdict_fields: dict[str, Any]) -> None:
    for message in _examples(png_b64, verdict_fields):
        data = encode(message)
        assert isinstance(data, bytes)
        assert decode(type(message), data) == message
        assert decode(type(message), data.decode()) == message


def test_encoding_is_compact_json_without_nulls(png_b64: str) -> None:
    data = encode(ImageEvent(event_id="e", image_b64=png_b64))
    obj = json.loads(data)
    assert "caption" not in obj
    assert obj["schema_version"] == 2
    assert b" " not in data


def test_missing_schema_version_reads_as_version_1(png_b64: str) -> None:
    data = json.dumps({"event_id": "e", "image_b64": png_b64})
    assert decode(ImageEvent, data).schema_version == 1


def _reject(data: bytes | str, model: type[BaseModel] = ImageEvent) -> SchemaError:
    with pytest.raises(SchemaError) as info:
        decode(model, data)
    assert isinstance(info.value, AigisError)
    return info.value


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe", "not_json"),
        (b"{not json", "not_json"),
        (b"[1, 2]", "not_an_object"),
        (b'"text"', "not_an_object"),
        (b"null", "not_an_object"),
    ],
)
def test_rejects_what_is_not_a_json_object(data: bytes, reason: str) -> None:
    assert _reject(data).reason == reason


@pytest.mark.parametrize("version", [3, 0, "1", None, True, False, 1.0, [1]])
def test_rejects_unknown_schema_version(version: object, png_b64: str) -> None:
    error = _reject(json.dumps({"schema_version": version, "event_id": "e", "image_b64": png_b64}))
    assert error.reason == "unsupported_schema_version"
    assert error.field == "schema_version"
    assert "this worker reads 1 and 2" in str(error)


def _v2_verdict(verdict_fields: dict[str, Any]) -> Verdict:
    return Verdict(
        **verdict_fields,
        evidence=[Evidence(kind="c2pa", value="Adobe Firefly", strength="verified")],
        decided_by="evidence",
        near_duplicate_of=NearDuplicate(image_sha256="cd" * 32, distance=4),
        bands=AppliedBands(ai_threshold=0.8, human_threshold=0.2, generator_min_confidence=0.5),
        qa_sample=True,
        canary=False,
        generator_family="openai",
    )


def test_version_2_fields_round_trip_and_version_1_drops_them(
    verdict_fields: dict[str, Any], png_b64: str
) -> None:
    verdict = _v2_verdict(verdict_fields)
    item = ReviewItem(verdict=verdict, image_b64=png_b64, qa_sample=True)
    assert decode(ReviewItem, encode(item)) == item
    old = json.loads(encode(item, version=1))
    assert old["schema_version"] == old["verdict"]["schema_version"] == 1
    assert "qa_sample" not in old
    assert not Verdict.V2_FIELDS & set(old["verdict"])
    # What a version 1 writer wrote reads here too.
    assert decode(ReviewItem, json.dumps(old)).verdict.event_id == verdict.event_id


def test_version_1_messages_cannot_carry_version_2_fields(
    verdict_fields: dict[str, Any],
) -> None:
    obj = json.loads(encode(_v2_verdict(verdict_fields)))
    obj["schema_version"] = 1
    error = _reject(json.dumps(obj), Verdict)
    assert "need schema_version 2" in str(error)
    with pytest.raises(ValueError, match="not one of"):
        encode(_v2_verdict(verdict_fields), version=3)


@pytest.mark.parametrize(
    ("obj", "reason", "field"),
    [
        ({"image_uri": "s3://b/k"}, "missing_field", "event_id"),
        ({"event_id": "e", "image_uri": "s3://b/k", "colour": "red"}, "unknown_field", "colour"),
        ({"event_id": "e", "image_b64": "@@@@"}, "bad_base64", "image_b64"),
        ({"event_id": "e", "image_uri": "ftp://h/a.png"}, "invalid_field", "image_uri"),
        ({"event_id": "e"}, "invalid_field", None),
        ({"event_id": "has space", "image_uri": "s3://b/k"}, "invalid_field", "event_id"),
        ({"event_id": "e", "image_uri": "s3://b/k", "caption": 5}, "invalid_field", "caption"),
    ],
)
def test_reason_codes(obj: dict[str, Any], reason: str, field: str | None) -> None:
    error = _reject(json.dumps(obj))
    assert (error.reason, error.field) == (reason, field)
    assert str(error)


def test_bad_uri_scheme_says_which_schemes_work() -> None:
    error = _reject(json.dumps({"event_id": "e", "image_uri": "gopher://h/x"}))
    assert "file, http, https, s3" in str(error)


def test_several_problems_are_counted() -> None:
    error = _reject(json.dumps({"event_id": 1, "image_uri": 2, "caption": 3}))
    assert "more problem" in str(error)


def test_oversized_inline_image_is_rejected_before_decoding() -> None:
    too_long = "A" * ((MAX_INLINE_IMAGE_BYTES * 4) // 3 + 8)
    error = _reject(json.dumps({"event_id": "e", "image_b64": too_long}))
    assert error.reason == "image_too_large"
    assert "publish it by URI" in str(error)


def test_oversized_inline_image_is_rejected_after_decoding() -> None:
    # Short enough to pass the length pre-check, yet decoding to a few bytes over the limit.
    raw = b"\x00" * (MAX_INLINE_IMAGE_BYTES + 2)
    error = _reject(json.dumps({"event_id": "e", "image_b64": base64.b64encode(raw).decode()}))
    assert error.reason == "image_too_large"
    assert f"over the {MAX_INLINE_IMAGE_BYTES} byte limit" in str(error)


def test_largest_inline_image_is_accepted() -> None:
    raw = b"\x01" * MAX_INLINE_IMAGE_BYTES
    event = ImageEvent.inline("e", raw)
    assert decode(ImageEvent, encode(event)).inline_bytes() == raw


def test_inconsistent_labels_are_invalid_field() -> None:
    obj = {"image_sha256": SHA, "image_uri": "s3://b/k", "label_a": 0, "label_b": 3}
    error = _reject(json.dumps({**obj, "reviewer": "bob"}), ReviewDecision)
    assert error.reason == "invalid_field"
    assert "exactly when label_a is 0" in str(error)

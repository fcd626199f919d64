"""Whatever the bytes, ``decode`` answers a message or a SchemaError, quickly: nothing else."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import ImageEvent, ReviewDecision, ReviewItem, SchemaError, Verdict, decode
from schemas.limits import MAX_DLQ_MESSAGE_BYTES, MAX_JSON_DEPTH
from schemas.messages import DeadLetter, PseudoLabel

pytestmark = pytest.mark.unit

MODELS = [ImageEvent, Verdict, ReviewItem, ReviewDecision, PseudoLabel, DeadLetter]
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)


def _reject(data: bytes | str, model: type = ImageEvent) -> SchemaError:
    started = time.monotonic()
    with pytest.raises(SchemaError) as info:
        decode(model, data)
    assert time.monotonic() - started < 5.0
    return info.value


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("[" * 100_000 + "]" * 100_000, "too_deep"),
        ('{"caption": ' + "[" * 100_000 + "]" * 100_000 + "}", "too_deep"),
        ('{"a":' * 50_000 + "1" + "}" * 50_000, "too_deep"),
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "too_deep"),
        ('{"schema_version": ' + "9" * 5_000 + "}", "not_json"),
        ('{"event_id": "e", "image_b64": "' + PNG_B64 + '", "x": NaN}', "not_json"),
        ('{"event_id": "e", "image_b64": "' + PNG_B64 + '", "x": Infinity}', "not_json"),
        (b"\x00" * 10, "not_json"),
        (b"", "not_json"),
        (b"\xef\xbb\xbf{}", "missing_field"),
        ("null", "not_an_object"),
        ("[]", "not_an_object"),
        (
            '{"schema_version": true, "event_id": "e", "image_b64": "' + PNG_B64 + '"}',
            "unsupported_schema_version",
        ),
    ],
)
def test_hostile_json_is_a_schema_error(data: bytes | str, reason: str) -> None:
    assert _reject(data).reason == reason


def test_an_oversized_message_is_refused_before_parsing() -> None:
    data = b" " * (MAX_DLQ_MESSAGE_BYTES + 1)
    assert _reject(data).reason == "message_too_large"


@pytest.mark.parametrize(
    ("produced_at", "expected"),
    [
        ("2024-05-01T12:00:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T14:00:00+02:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ],
)
def test_a_time_without_a_zone_is_read_as_utc(produced_at: str, expected: datetime) -> None:
    event = decode(
        ImageEvent,
        json.dumps({"event_id": "e", "image_b64": PNG_B64, "produced_at": produced_at}),
    )
    assert event.produced_at == expected
    assert event.produced_at is not None
    assert event.produced_at.tzinfo is not None
    # Times now subtract without a TypeError, whatever the producer sent.
    assert (datetime.now(UTC) - event.produced_at).total_seconds() > 0


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)
FIELDS = st.sampled_from(
    ["event_id", "image_b64", "image_uri", "caption", "schema_version", "produced_at", "source"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200))
def test_random_bytes_never_raise_anything_but_schema_error(data: bytes) -> None:
    for model in MODELS:
        with contextlib.suppress(SchemaError):
            decode(model, data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=st.dictionaries(FIELDS, JSON, max_size=7))
def test_random_json_objects_never_raise_anything_but_schema_error(obj: dict[str, object]) -> None:
    text = json.dumps(obj)
    for model in MODELS:
        with contextlib.suppress(SchemaError):
            decode(model, text)

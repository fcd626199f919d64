"""The canary's slice, state and tally as :mod:`schemas.canary` reads them: the slice's size
within a stated tolerance, and every state Redis may hold answered by a state or a CanaryError."""

from __future__ import annotations

import contextlib
import hashlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.canary import CanaryError, CanaryState, Comparison, in_slice

pytestmark = pytest.mark.unit

HASHES = [hashlib.sha256(i.to_bytes(4, "big")).hexdigest() for i in range(20_000)]


@pytest.mark.parametrize(("percent", "tolerance"), [(1.0, 0.3), (5.0, 0.5), (50.0, 1.5)])
def test_the_slice_takes_its_share_of_images_within_the_tolerance(
    percent: float, tolerance: float
) -> None:
    """20 000 distinct images: the share in the slice is within ``tolerance`` percentage points
    of ``percent`` (over three standard deviations of a fair draw)."""
    share = 100.0 * sum(in_slice(h, percent) for h in HASHES) / len(HASHES)
    assert abs(share - percent) <= tolerance


def test_a_larger_slice_keeps_every_image_of_a_smaller_one() -> None:
    """Raising the share only adds images: none answered by the candidate goes back."""
    small = {h for h in HASHES if in_slice(h, 5.0)}
    large = {h for h in HASHES if in_slice(h, 20.0)}
    assert small < large
    assert not any(in_slice(h, 0.0) for h in HASHES[:100])
    assert all(in_slice(h, 100.0) for h in HASHES[:100])


def test_a_state_survives_its_round_trip() -> None:
    state = CanaryState("7", 12.5, "6", datetime(2026, 11, 30, tzinfo=UTC))
    assert CanaryState.from_json(state.to_json()) == state
    assert CanaryState.from_json(state.to_json().encode()) == state


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        b"null",
        b'{"version": "2"}',
        b'{"version": "2", "percent": "lots", "default": "1", "started_at": "2026-11-30"}',
        b'{"version": "2", "percent": 0, "default": "1", "started_at": "2026-11-30"}',
        b'{"version": "2", "percent": 101, "default": "1", "started_at": "2026-11-30"}',
        b'{"version": "", "percent": 5, "default": "1", "started_at": "2026-11-30"}',
        b'{"version": "../1", "percent": 5, "default": "1", "started_at": "2026-11-30"}',
        b'{"version": "2", "percent": 5, "default": "1/x?y", "started_at": "2026-11-30"}',
        b'{"version": "2", "percent": 5, "default": "1", "started_at": "yesterday"}',
        b'{"version": "2", "percent": NaN, "default": "1", "started_at": "2026-11-30"}',
        b"\xff\xfe",
        b"[" * 10_000,
        b"[" * 2_000,
    ],
)
def test_a_state_that_is_not_one_is_a_canary_error(raw: bytes) -> None:
    with pytest.raises(CanaryError, match="abort"):
        CanaryState.from_json(raw)


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_are_a_state_or_a_canary_error(raw: bytes) -> None:
    with contextlib.suppress(CanaryError):
        CanaryState.from_json(raw)


@given(
    st.dictionaries(
        st.sampled_from(["version", "percent", "default", "started_at"]),
        st.none() | st.integers() | st.text(max_size=20) | st.floats(),
    )
)
def test_any_json_object_is_a_state_or_a_canary_error(fields: dict[str, object]) -> None:
    with contextlib.suppress(CanaryError):
        CanaryState.from_json(json.dumps(fields))


def test_the_tally_reads_as_rates_and_means() -> None:
    raw = {
        b"items": b"4",
        b"agreed": b"3",
        b"review_default": b"1",
        b"review_candidate": b"2",
        b"p_ai_default": b"1.0",
        b"p_ai_candidate": b"2.0",
        b"abs_shift": b"1.2",
    }
    summary = Comparison.from_hash(raw).summary()
    assert summary["agreement"] == 0.75
    assert summary["p_ai_shift"] == 0.25
    assert summary["review_rate_default"] == 0.25
    assert summary["review_rate_candidate"] == 0.5
    assert Comparison.from_hash({}).summary()["agreement"] is None
    assert Comparison.from_hash({"items": "x"}).items == 0  # a damaged field counts 0

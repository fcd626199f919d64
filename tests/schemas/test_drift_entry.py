"""The drift entries workers keep in Redis, read back whatever the hash holds."""

from __future__ import annotations

import pytest

from schemas.drift import DriftEntry

pytestmark = pytest.mark.unit


def test_an_entry_survives_its_round_trip() -> None:
    entry = DriftEntry("3", "tenant-a", "p_ai", "aigis-worker.host.0", 0.31, 1_700_000_000.0)
    assert DriftEntry.read(entry.field().encode(), entry.value().encode()) == entry


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (b"3|tenant-a|p_ai", b'{"psi": 0.1, "at": 1}'),
        (b"3|tenant-a|p_ai|w|extra", b'{"psi": 0.1, "at": 1}'),
        (b"3|tenant-a|p_ai|w", b"not json"),
        (b"3|tenant-a|p_ai|w", b'{"psi": "high", "at": 1}'),
        (b"3|tenant-a|p_ai|w", b'{"at": 1}'),
        (b"3|tenant-a|p_ai|w", b"[" * 5_000),
        (b"\xff\xfe", b'{"psi": 0.1, "at": 1}'),
    ],
)
def test_a_field_or_value_that_is_not_an_entry_is_skipped(field: bytes, value: bytes) -> None:
    assert DriftEntry.read(field, value) is None


def test_status_shows_the_largest_index_with_the_age_of_its_own_report() -> None:
    from aigis.cli.model_status import drift_rows

    now = 1_700_100_000.0
    stale = DriftEntry("3", "none", "p_ai", "worker.0", 0.9, now - 86_400)  # a stopped worker
    fresh = DriftEntry("3", "none", "p_ai", "worker.1", 0.05, now - 5)
    other = DriftEntry("3", "none", "generator", "worker.1", 0.01, now - 5)
    raw = {e.field().encode(): e.value().encode() for e in (stale, fresh, other)}
    raw[b"garbage"] = b"{"
    rows = {r["statistic"]: r for r in drift_rows(raw, now, threshold=0.2)}
    assert rows["p_ai"] == {
        "model_version": "3",
        "source": "none",
        "statistic": "p_ai",
        "psi": 0.9,
        "workers": 2,
        "age_s": 86_400.0,
        "drifting": True,
    }
    assert (rows["generator"]["psi"], rows["generator"]["drifting"]) == (0.01, False)

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

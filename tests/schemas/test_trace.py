"""Trace context: a well-formed traceparent is continued, anything else starts a new trace."""

from __future__ import annotations

import pytest

from schemas import trace

pytestmark = pytest.mark.unit

GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_child_keeps_the_trace_and_flags_with_a_span_of_its_own() -> None:
    child = trace.child(GOOD.encode())
    assert trace.trace_id(child) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert child.endswith("-01")
    assert trace.parse(child) is not None
    assert trace.parse(child)[1] != "00f067aa0ba902b7"  # type: ignore[index]


@pytest.mark.parametrize(
    "hostile",
    [
        None,
        b"",
        GOOD.upper(),
        GOOD.replace("00-", "ff-", 1),
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",
        GOOD + "-extra",
        GOOD[:-1] + "\n",
        b"\xff" * 55,
        "x" * 10_000,
    ],
)
def test_a_malformed_parent_starts_a_new_trace(hostile: bytes | str | None) -> None:
    assert trace.parse(hostile) is None
    assert trace.trace_id(hostile) is None
    child = trace.child(hostile)
    assert trace.parse(child) is not None
    assert trace.trace_id(child) != "4bf92f3577b34da6a3ce929d0e0e4736"


def test_the_header_is_found_among_a_records_headers_whatever_its_case() -> None:
    headers = [("other", b"x"), ("TraceParent", GOOD.encode())]
    assert trace.from_headers(headers) == GOOD.encode()
    assert trace.from_headers(None) is None
    assert trace.from_headers([("traceparent", "not bytes")]) is None  # type: ignore[list-item]

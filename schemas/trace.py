"""Trace context for one event, carried as the W3C ``traceparent`` Kafka header.

``aigis publish`` gives each event a new trace; every record the pipeline writes for it (its
verdict, review item, pseudo-label or dead letter) carries a child of that trace (the same trace
id, a span id of its own), and the worker's log lines about the event name the trace id. So one
event can be followed from publish to verdict across topics and logs.

A producer's header is input like any other: anything that is not exactly
``00-<32 hex>-<16 hex>-<2 hex>`` (lower case, ids not all zero) starts a new trace instead.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from typing import Final

HEADER: Final = "traceparent"
_FORMAT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_MAX_LEN = 55


def new() -> str:
    """A new trace: fresh trace and span ids, sampled."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def parse(value: bytes | str | None) -> tuple[str, str, str] | None:
    """``(trace id, span id, flags)`` of a well-formed ``traceparent``; None for anything else."""
    if value is None or len(value) != _MAX_LEN:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    match = _FORMAT.fullmatch(value)
    if match is None:
        return None
    trace, span, flags = match.groups()
    if trace == "0" * 32 or span == "0" * 16:
        return None
    return trace, span, flags


def child(parent: bytes | str | None) -> str:
    """A span of ``parent``'s trace (a new trace when ``parent`` is missing or malformed)."""
    parsed = parse(parent)
    if parsed is None:
        return new()
    trace, _, flags = parsed
    return f"00-{trace}-{secrets.token_hex(8)}-{flags}"


def trace_id(value: bytes | str | None) -> str | None:
    parsed = parse(value)
    return None if parsed is None else parsed[0]


def from_headers(headers: Iterable[tuple[str, bytes]] | None) -> bytes | None:
    """The first ``traceparent`` among a Kafka record's headers."""
    for name, value in headers or ():
        if isinstance(name, str) and name.lower() == HEADER and isinstance(value, bytes):
            return value
    return None

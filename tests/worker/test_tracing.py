"""One event followed from publish to verdict: its trace id travels in the traceparent header."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from schemas import trace
from schemas.settings import Settings
from tests.streams import events_for, publish_events, publish_raw, run_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Images = list[tuple[bytes, str | None]]


def test_every_output_carries_a_child_of_its_events_trace(
    worker_settings: Settings, smoke_images: Images, read_topic: Callable[..., list[Any]]
) -> None:
    settings = worker_settings
    publish_events(settings, events_for(smoke_images[:4], "traced"))
    publish_raw(settings, [b"not an event"])  # no traceparent: its dead letter starts one
    run_worker(settings)
    published = {
        r.key: trace.from_headers(r.headers) for r in read_topic(settings.topics.images, 5)
    }
    verdicts = read_topic(settings.topics.verdicts, 4)
    [letter] = read_topic(settings.topics.dlq, 1)
    assert len(verdicts) == 4
    for verdict in verdicts:
        header = trace.from_headers(verdict.headers)
        assert trace.trace_id(header) == trace.trace_id(published[verdict.key]) is not None
        assert header != published[verdict.key], "a verdict is a span of its own"
    assert published[letter.key] is None
    assert trace.parse(trace.from_headers(letter.headers)) is not None

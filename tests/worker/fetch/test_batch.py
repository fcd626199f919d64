"""The worker's batch loads: inline bytes and URIs, in order, each bounded from its own start."""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from schemas import ImageEvent
from schemas.settings import WorkerSettings
from tests.worker.fetch.origin import BODY, Origin, loopback, ok
from worker.fetch import REASONS, Fetcher, FetchError

pytestmark = pytest.mark.unit


def by_uri(uri: str, event_id: str = "e") -> ImageEvent:
    return ImageEvent(event_id=event_id, image_uri=uri)


@pytest.fixture
def fetcher(origin: Origin, tmp_path: Path) -> Iterator[Fetcher]:
    f = Fetcher(loopback(origin, file_roots=[tmp_path]), WorkerSettings(max_image_bytes=1_000_000))
    yield f
    f.close()


def test_inline_file_and_http_images_load_in_order(
    fetcher: Fetcher, origin: Origin, tmp_path: Path
) -> None:
    path = tmp_path / "a b.png"
    path.write_bytes(b"file-bytes")
    events = [
        ImageEvent.inline("e1", b"inline-bytes"),
        by_uri(path.as_uri()),
        by_uri(origin.url()),
    ]
    assert fetcher.fetch_all(events) == [b"inline-bytes", b"file-bytes", BODY]


def test_every_failure_is_a_fetch_error_with_a_known_reason(
    fetcher: Fetcher, origin: Origin, tmp_path: Path
) -> None:
    events = [
        by_uri("file:///etc/shadow"),
        by_uri((tmp_path / "missing.png").as_uri()),
        by_uri(origin.url("/missing.png")),
        by_uri("http://169.254.169.254/latest/meta-data/"),
        by_uri("s3://not-listed/a.png"),
        by_uri("https://127.0.0.1/a.png"),
    ]
    results = fetcher.fetch_all(events)
    assert all(isinstance(r, FetchError) and r.reason in REASONS for r in results)
    reasons = [getattr(r, "reason", None) for r in results]
    assert reasons == [
        "uri_not_allowed",
        "unreachable_uri",
        "unreachable_uri",
        "uri_not_allowed",
        "uri_not_allowed",
        "uri_not_allowed",
    ]


def test_a_queued_load_gets_its_full_time_from_when_it_starts(
    origin: Origin, tmp_path: Path
) -> None:
    def slow(h: BaseHTTPRequestHandler) -> None:
        time.sleep(0.6)
        ok(h)

    origin.routes["/slow.png"] = slow
    # One load at a time, each within its 1 s limit, but the last starts 1.8 s after the batch.
    one_at_a_time = Fetcher(loopback(origin), WorkerSettings(fetch_concurrency=1))
    try:
        results = one_at_a_time.fetch_all(
            [by_uri(origin.url("/slow.png"), f"e{i}") for i in range(4)]
        )
    finally:
        one_at_a_time.close()
    assert results == [BODY] * 4


def test_size_limit_applies_to_every_source(origin: Origin, tmp_path: Path) -> None:
    small = Fetcher(loopback(origin, file_roots=[tmp_path]), WorkerSettings(max_image_bytes=100))
    try:
        big = tmp_path / "big.png"
        big.write_bytes(b"y" * 101)
        events = [ImageEvent.inline("e", b"z" * 101), by_uri(big.as_uri()), by_uri(origin.url())]
        results = small.fetch_all(events)
    finally:
        small.close()
    assert [getattr(r, "reason", None) for r in results] == ["image_too_large"] * 3

"""Loading images inline and by URI, under the worker's size and time limits."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from schemas import ImageEvent
from schemas.settings import WorkerSettings
from worker.fetch import Fetcher, FetchError

pytestmark = pytest.mark.unit

BODY = b"\x89PNG" + b"x" * 2_000


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b"x" * 10)
                self.wfile.flush()
                time.sleep(0.1)
            return
        if self.path != "/ok.png":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    f = Fetcher(WorkerSettings(max_image_bytes=1_000_000, fetch_timeout_s=0.5))
    yield f
    f.close()


def by_uri(uri: str) -> ImageEvent:
    return ImageEvent(event_id="e", image_uri=uri)


def test_inline_file_and_http_images_load_in_order(
    fetcher: Fetcher, http_base: str, tmp_path: Path
) -> None:
    path = tmp_path / "a b.png"
    path.write_bytes(b"file-bytes")
    events = [
        ImageEvent.inline("e1", b"inline-bytes"),
        by_uri(path.as_uri()),
        by_uri(f"{http_base}/ok.png"),
    ]
    assert fetcher.fetch_all(events) == [b"inline-bytes", b"file-bytes", BODY]


@pytest.mark.parametrize("uri", ["file:///nonexistent/x.png", "http://127.0.0.1:9/x.png"])
def test_unreachable_uris_are_reported(fetcher: Fetcher, uri: str) -> None:
    [result] = fetcher.fetch_all([by_uri(uri)])
    assert isinstance(result, FetchError)
    assert result.reason == "unreachable_uri"


def test_http_errors_are_unreachable(fetcher: Fetcher, http_base: str) -> None:
    [result] = fetcher.fetch_all([by_uri(f"{http_base}/missing.png")])
    assert isinstance(result, FetchError)
    assert (result.reason, "404" in result.detail) == ("unreachable_uri", True)


def test_a_trickling_server_hits_the_time_limit(fetcher: Fetcher, http_base: str) -> None:
    started = time.monotonic()
    [result] = fetcher.fetch_all([by_uri(f"{http_base}/slow")])
    assert isinstance(result, FetchError)
    assert result.reason == "fetch_timeout"
    assert time.monotonic() - started < 2.0


def test_size_limit_applies_to_every_source(http_base: str, tmp_path: Path) -> None:
    small = Fetcher(WorkerSettings(max_image_bytes=100))
    try:
        big = tmp_path / "big.png"
        big.write_bytes(b"y" * 101)
        events = [
            ImageEvent.inline("e", b"z" * 101),
            by_uri(big.as_uri()),
            by_uri(f"{http_base}/ok.png"),
        ]
        results = small.fetch_all(events)
    finally:
        small.close()
    assert [getattr(r, "reason", None) for r in results] == ["image_too_large"] * 3

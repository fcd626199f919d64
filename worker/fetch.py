"""Load the bytes of each event's image: inline, or from a file, http(s) or s3 URI.

Every load is bounded by ``worker.max_image_bytes`` and ``worker.fetch_timeout_s``; what cannot
be loaded becomes a :class:`FetchError` with a DLQ reason, never an exception out of the batch.
URIs of one batch are fetched concurrently on a thread pool.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from schemas import AigisError, ImageEvent
from schemas.settings import WorkerSettings

_CHUNK = 64 * 1024


class FetchError(AigisError):
    """An image could not be loaded. ``reason``: ``unreachable_uri``, ``fetch_timeout``,
    ``image_too_large`` or ``empty_image``."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


def _too_large(limit: int) -> FetchError:
    return FetchError(
        "image_too_large",
        f"image is over the worker's {limit} byte limit (worker.max_image_bytes); "
        "downscale it or raise the limit",
    )


class Fetcher:
    """Loads images for a batch of events. Thread-safe; close it to release the pool."""

    def __init__(self, settings: WorkerSettings) -> None:
        self._limit = settings.max_image_bytes
        self._timeout = settings.fetch_timeout_s
        self._pool = ThreadPoolExecutor(settings.fetch_concurrency, thread_name_prefix="fetch")
        self._http = httpx.Client(timeout=self._timeout, follow_redirects=True, max_redirects=5)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()

    def fetch_all(self, events: Sequence[ImageEvent]) -> list[bytes | FetchError]:
        """The image bytes of each event, or why they could not be had, in the same order."""
        futures = {i: self._pool.submit(self.fetch, e) for i, e in enumerate(events) if e.image_uri}
        # Each load enforces its own timeout; this outer bound only guards against a library
        # that ignores it (the thread is left to finish; its result is dropped).
        deadline = time.monotonic() + self._timeout + 1.0
        results: list[bytes | FetchError] = []
        for i, event in enumerate(events):
            if i not in futures:
                results.append(self.fetch(event))
                continue
            try:
                results.append(futures[i].result(timeout=max(0.0, deadline - time.monotonic())))
            except FutureTimeout:
                results.append(self._timeout_error(event.image_uri or ""))
        return results

    def fetch(self, event: ImageEvent) -> bytes | FetchError:
        try:
            data = self._load(event)
        except FetchError as err:
            return err
        if not data:
            return FetchError("empty_image", "the image has no bytes; publish a non-empty file")
        if len(data) > self._limit:
            return _too_large(self._limit)
        return data

    def _load(self, event: ImageEvent) -> bytes:
        inline = event.inline_bytes()
        if inline is not None:
            return inline
        uri = event.image_uri or ""
        scheme = urlsplit(uri).scheme
        if scheme == "file":
            return self._read_file(Path(unquote(urlsplit(uri).path)))
        if scheme in {"http", "https"}:
            return self._read_http(uri)
        return self._read_fsspec(uri)

    def _read_file(self, path: Path) -> bytes:
        try:
            with path.open("rb") as f:
                return f.read(self._limit + 1)
        except OSError as exc:
            raise FetchError(
                "unreachable_uri", f"cannot read file {path}: {exc.strerror or exc}"
            ) from None

    def _read_http(self, uri: str) -> bytes:
        # httpx's timeout bounds each network operation; the deadline bounds the whole download
        # so a server trickling bytes cannot hold the batch.
        deadline = time.monotonic() + self._timeout
        try:
            with self._http.stream("GET", uri) as response:
                if response.status_code >= 400:
                    raise FetchError(
                        "unreachable_uri", f"GET {uri} answered HTTP {response.status_code}"
                    )
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > self._limit:
                    raise _too_large(self._limit)
                body = bytearray()
                for chunk in response.iter_bytes(_CHUNK):
                    body += chunk
                    if len(body) > self._limit:
                        raise _too_large(self._limit)
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("download deadline passed")
                return bytes(body)
        except httpx.TimeoutException:
            raise self._timeout_error(uri) from None
        except httpx.HTTPError as exc:
            raise FetchError("unreachable_uri", f"GET {uri} failed: {exc}") from None

    def _timeout_error(self, uri: str) -> FetchError:
        return FetchError(
            "fetch_timeout", f"loading {uri} took over {self._timeout}s (worker.fetch_timeout_s)"
        )

    def _read_fsspec(self, uri: str) -> bytes:
        import fsspec  # only s3 events need it; it pulls in the protocol's library lazily

        timeouts = {"connect_timeout": self._timeout, "read_timeout": self._timeout}
        try:
            with fsspec.open(uri, "rb", config_kwargs=timeouts) as f:
                data: bytes = f.read(self._limit + 1)
                return data
        except ImportError as exc:
            raise FetchError(
                "unreachable_uri",
                f"{uri}: no filesystem for this scheme ({exc}); "
                "install aigis[s3] on the worker host",
            ) from None
        except (OSError, ValueError) as exc:
            raise FetchError("unreachable_uri", f"cannot read {uri}: {exc}") from None

"""The worker's loads for a batch of events: inline bytes, or URIs fetched concurrently.

What cannot be loaded becomes a :class:`FetchError` with a DLQ reason, never an exception out
of the batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import structlog

from schemas import ImageEvent
from schemas.settings import WorkerSettings
from schemas.settings_fetch import FetchSettings
from schemas.uris import redact_uri
from worker.fetch.errors import FetchError, empty, timed_out, too_large, unreachable
from worker.fetch.reader import UriReader

log = structlog.get_logger(__name__)

_GRACE_S = 1.0


class Fetcher:
    """Loads images for a batch of events. Thread-safe; close it to release the pool."""

    def __init__(self, fetch: FetchSettings, worker: WorkerSettings) -> None:
        self._limit = worker.max_image_bytes
        self._concurrency = worker.fetch_concurrency
        self._max_fetch_s = fetch.max_fetch_s
        self._reader = UriReader(fetch, lookups=worker.fetch_concurrency)
        self._pool = ThreadPoolExecutor(worker.fetch_concurrency, thread_name_prefix="fetch")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._reader.close()

    def fetch_all(self, events: Sequence[ImageEvent]) -> list[bytes | FetchError]:
        """The image bytes of each event, or why they could not be had, in the same order."""
        futures = {i: self._pool.submit(self.fetch, e) for i, e in enumerate(events) if e.image_uri}
        # Each load bounds itself from the moment it starts. This backstop is for a source that
        # cannot (a hung network file system): it allows every wave of the pool its full time,
        # so a load queued behind slow ones is never cut short.
        waves = -(-len(futures) // self._concurrency)
        deadline = time.monotonic() + waves * self._max_fetch_s + _GRACE_S
        results: list[bytes | FetchError] = []
        for i, event in enumerate(events):
            if i not in futures:
                results.append(self.fetch(event))
                continue
            try:
                results.append(futures[i].result(timeout=max(0.0, deadline - time.monotonic())))
            except FutureTimeout:
                futures[i].cancel()
                results.append(timed_out("past the batch's bound"))
        return results

    def fetch(self, event: ImageEvent) -> bytes | FetchError:
        try:
            return self._load(event)
        except FetchError as err:
            return err
        except Exception:  # a bug must not turn one event into a poison pill for its partition
            uri = redact_uri(event.image_uri) if event.image_uri else None
            log.exception("fetch_crashed", event_id=event.event_id, uri=uri)
            return unreachable("unexpected error")

    def _load(self, event: ImageEvent) -> bytes:
        inline = event.inline_bytes()
        if inline is None:
            return self._reader.read(event.image_uri or "", self._limit)
        if not inline:
            raise empty()
        if len(inline) > self._limit:
            raise too_large(self._limit)
        return inline

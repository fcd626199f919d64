"""One image URI to its bytes, under the fetch policy: what every process that loads images by
URI calls (the worker through :class:`~worker.fetch.batch.Fetcher`; retraining and review can
call it with the same settings)."""

from __future__ import annotations

import time
from pathlib import Path

from schemas.settings_fetch import FetchSettings
from worker.fetch.errors import empty
from worker.fetch.policy import FetchPolicy, S3Object
from worker.fetch.storage import read_file, read_s3
from worker.fetch.web import WebLoader


class UriReader:
    """Loads what ``settings`` admit. Thread-safe; close it when done."""

    def __init__(self, settings: FetchSettings, *, lookups: int = 8) -> None:
        self.policy = FetchPolicy(settings)
        self._web = WebLoader(self.policy, lookups=lookups)

    def close(self) -> None:
        self._web.close()

    def read(self, uri: str, max_bytes: int) -> bytes:
        """The bytes ``uri`` names, at most ``max_bytes``. Raises ``FetchError`` and nothing
        else; a refused URI is refused before any file is opened or connection made."""
        target = self.policy.target(uri)
        timeout = self.policy.settings.timeout_s
        if isinstance(target, Path):
            data = read_file(target, max_bytes, time.monotonic() + timeout)
        elif isinstance(target, S3Object):
            data = read_s3(target, max_bytes, time.monotonic() + timeout, timeout)
        else:
            data = self._web.load(target, max_bytes)
        if not data:
            raise empty()
        return data

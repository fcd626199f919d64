"""The image of a review item, for the browser: inline bytes, else the label store's blob of its
hash, else its URI through the worker's fetch policy. Only bytes that are an image of a known
format are served, under that format's type; they must hash to the item's ``image_sha256``
(a URI whose content changed since it was scored is not shown as if it were the same image)."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable

import structlog

from aigis.review import media_type
from schemas.messages import ReviewItem
from schemas.settings import Settings
from training.labelstore.blobs import blob_path
from training.labelstore.fs import StoreFS
from worker.fetch import FetchError, UriReader

log = structlog.get_logger(__name__)


class ImageSource:
    """Loads item images; one URI reader for the process."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._reader = UriReader(settings.fetch, lookups=4)

    def close(self) -> None:
        self._reader.close()

    def load(self, item: ReviewItem) -> tuple[bytes, str] | None:
        """The image's bytes and media type, or None when none can be had (logged, by hash)."""
        sha = item.verdict.image_sha256
        limit = self._settings.worker.max_image_bytes
        loaders: tuple[tuple[str, Callable[[], bytes | None]], ...] = (
            ("inline", lambda: _inline(item)),
            ("store", lambda: self._blob(sha)),
            ("uri", lambda: self._uri(item, limit)),
        )
        for where, load in loaders:
            data = load()
            if data is None:
                continue
            if len(data) > limit or hashlib.sha256(data).hexdigest() != sha:
                log.warning("review_image_mismatch", image_sha256=sha, source=where)
                continue
            kind = media_type(data)  # never served as HTML or script
            if kind is None:
                log.warning("review_image_unknown_format", image_sha256=sha, source=where)
                return None
            return data, kind
        return None

    def _blob(self, sha: str) -> bytes | None:
        try:
            store = StoreFS(self._settings.store_url)
            path = blob_path(sha)
            return store.read(path) if store.exists(path) else None
        except (OSError, ValueError) as exc:
            log.warning("review_image_store_failed", image_sha256=sha, error=type(exc).__name__)
            return None

    def _uri(self, item: ReviewItem, limit: int) -> bytes | None:
        if item.image_uri is None:
            return None
        try:
            return self._reader.read(item.image_uri, limit)
        except FetchError as err:
            log.warning(
                "review_image_fetch_refused",
                image_sha256=item.verdict.image_sha256,
                reason=err.reason,
            )
            return None


def _inline(item: ReviewItem) -> bytes | None:
    if item.image_b64 is None:
        return None
    try:
        return base64.b64decode(item.image_b64, validate=True)
    except (binascii.Error, ValueError):
        return None

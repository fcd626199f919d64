"""How the label store reads an image URI: only through the reader the process installed.

The fetch policy (schemes, file roots, s3 buckets, public addresses only, deadlines) lives with
the stream side, in :mod:`worker.fetch`, which this layer cannot import. Every ``aigis`` command
(and a retraining cycle run from Python) installs a reader bound by that policy with
:func:`install_uri_reader`; a process that installed none reads no URI at all, so no code path
reads a producer's URI unchecked.
"""

from __future__ import annotations

from collections.abc import Callable

from schemas.errors import AigisError

UriRead = Callable[[str, int], bytes]
"""``read(uri, max_bytes) -> bytes``; raises an error with ``reason`` and ``detail``."""

_reader: UriRead | None = None


class FetchError(AigisError):
    """A URI could not be read: ``reason`` ``uri_not_allowed``, ``unreachable_uri``,
    ``fetch_timeout``, ``image_too_large`` or ``empty_image``."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


def install_uri_reader(read: UriRead | None) -> None:
    """Make ``read`` the way this process reads image URIs (None: read none)."""
    global _reader
    _reader = read


def fetch_image(uri: str, *, max_bytes: int) -> bytes:
    """The bytes at ``uri``, through the installed reader. Raises FetchError."""
    if _reader is None:
        raise FetchError(
            "uri_not_allowed",
            "this process reads no image URIs: it has no fetch policy installed",
        )
    try:
        return _reader(uri, max_bytes)
    except AigisError as exc:
        reason = getattr(exc, "reason", "unreachable_uri")
        raise FetchError(reason, getattr(exc, "detail", str(exc))) from None

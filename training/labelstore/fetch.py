"""Reading an image URI for the label store, bounded in size and time.

:func:`fetch_image` is the only place the store turns a record's URI into bytes (retraining
re-reads the images it trains on through it), so a URI policy is applied by changing it alone.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from schemas.errors import AigisError

_CHUNK = 64 * 1024


class FetchError(AigisError):
    """A URI could not be read: ``reason`` ``unreachable_uri``, ``fetch_timeout`` or
    ``image_too_large``."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


def fetch_image(uri: str, *, max_bytes: int, timeout_s: float) -> bytes:
    """The bytes at ``uri`` (``file``, ``http(s)`` or an fsspec URL such as ``s3``).

    Raises FetchError past ``max_bytes`` or ``timeout_s`` (the whole download), for an HTTP
    error status, or when the URI cannot be read.
    """
    parts = urlsplit(uri)
    try:
        if parts.scheme == "file":
            with Path(unquote(parts.path)).open("rb") as handle:
                data = handle.read(max_bytes + 1)
        elif parts.scheme in ("http", "https"):
            data = _http(uri, max_bytes, timeout_s)
        else:
            import fsspec  # the protocol's library (s3fs) is imported only when a URI needs it

            options = {}
            if parts.scheme == "s3":
                options["config_kwargs"] = {"connect_timeout": timeout_s, "read_timeout": timeout_s}
            with fsspec.open(uri, "rb", **options) as handle:
                data = handle.read(max_bytes + 1)
    except httpx.TimeoutException:
        raise FetchError("fetch_timeout", f"no answer within {timeout_s}s") from None
    except (OSError, ValueError, ImportError, httpx.HTTPError) as exc:
        raise FetchError("unreachable_uri", f"{type(exc).__name__}: {exc}") from None
    if len(data) > max_bytes:
        raise FetchError("image_too_large", f"the image is over {max_bytes} bytes")
    return bytes(data)


def _http(uri: str, max_bytes: int, timeout_s: float) -> bytes:
    # httpx's timeout bounds each network operation; the deadline bounds the whole download.
    deadline = time.monotonic() + timeout_s
    with (
        httpx.Client(timeout=timeout_s, follow_redirects=True, max_redirects=5) as client,
        client.stream("GET", uri) as response,
    ):
        if response.status_code >= 400:
            raise OSError(f"HTTP {response.status_code}")
        body = bytearray()
        for chunk in response.iter_bytes(_CHUNK):
            body += chunk
            if len(body) > max_bytes:
                break
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout("download deadline passed")
        return bytes(body)

"""What the label store raises. ``ImageError.reason`` is a stable code for counts and logs."""

from __future__ import annotations

from typing import Final

from schemas.errors import AigisError

IMAGE_REASONS: Final[tuple[str, ...]] = (
    "no_image",
    "invalid_record",
    "missing_blob",
    "uri_not_allowed",
    "unreachable_uri",
    "fetch_timeout",
    "image_too_large",
    "empty_image",
    "image_hash_mismatch",
)
"""Every ``ImageError.reason``, in the order a read can meet them."""


class StoreError(AigisError):
    """The label store cannot be read or written as asked; ``url`` names the store."""

    def __init__(self, detail: str, url: str) -> None:
        self.url = url
        super().__init__(f"label store {url}: {detail}")


class ImageError(StoreError):
    """A record's image cannot be used; ``reason`` is one of :data:`IMAGE_REASONS`.

    ``no_image``: stored without bytes or URI; ``invalid_record``: its image hash is not a
    SHA-256 hex digest; ``missing_blob``: the kept bytes are gone; ``unreachable_uri``,
    ``fetch_timeout``, ``image_too_large``: its URI could not be read within the limits;
    ``image_hash_mismatch``: the bytes are not the image that was labelled.
    """

    def __init__(self, reason: str, detail: str, url: str) -> None:
        self.reason = reason
        super().__init__(detail, url)


class ImageHashMismatchError(ImageError):
    """Image bytes do not hash to the SHA-256 their message or record claims."""

    def __init__(self, detail: str, url: str) -> None:
        super().__init__("image_hash_mismatch", detail, url)

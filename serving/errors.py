"""Errors of the serving package. Imports nothing heavy: the worker catches ``ImageError``."""

from __future__ import annotations

from schemas.errors import AigisError


class ImageError(AigisError):
    """An image cannot be used.

    ``reason`` is a stable code fit for a metric label and the DLQ: ``image_too_large``,
    ``decompression_bomb``, ``extreme_aspect_ratio``, ``undecodable_image``, ``truncated_image``
    or ``empty_image``.
    ``str(err)`` says what happened and what to do.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


class CheckpointError(AigisError):
    """A checkpoint directory is missing a file, holds an invalid one, or cannot be built.

    ``path`` names the file or directory at fault.
    """

    def __init__(self, detail: str, path: str | None = None) -> None:
        self.path = path
        super().__init__(detail)

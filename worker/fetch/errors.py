"""Why an image could not be loaded, in words that are safe to show whoever published it.

A producer reads the dead letters of its own events, so a detail never repeats what the loader
saw: no operating-system errors, HTTP statuses, response bodies or addresses, which would tell a
producer which files exist on a worker's host and which internal ports answer. What happened is
kept in ``cause``, for the operator's logs only.
"""

from __future__ import annotations

from schemas import AigisError

REASONS = ("uri_not_allowed", "fetch_timeout", "unreachable_uri", "image_too_large", "empty_image")
"""Every ``FetchError.reason``: stable codes for the DLQ and metric labels."""


class FetchError(AigisError):
    """An image could not be loaded. ``reason`` is one of :data:`REASONS`; ``detail`` is a
    sentence for the producer; ``cause`` says what the loader saw, for logs only."""

    def __init__(self, reason: str, detail: str, cause: str = "") -> None:
        self.reason = reason
        self.detail = detail
        self.cause = cause
        super().__init__(detail)


def not_allowed(rule: str) -> FetchError:
    """``rule`` names what the URI itself breaks (its scheme, port, path...), never what a
    lookup or a connection found beyond what the producer can see."""
    return FetchError(
        "uri_not_allowed",
        f"the image URI is outside this deployment's fetch policy ({rule}); publish the image "
        "inline or from a location the policy admits",
        rule,
    )


def timed_out(cause: str) -> FetchError:
    return FetchError(
        "fetch_timeout",
        "the image could not be downloaded within the time limit; publish it inline or from a "
        "faster host",
        cause,
    )


def unreachable(cause: str) -> FetchError:
    return FetchError(
        "unreachable_uri",
        "the image could not be loaded from its URI; check that it exists and is readable by "
        "anyone, or publish it inline",
        cause,
    )


def too_large(limit: int) -> FetchError:
    return FetchError(
        "image_too_large",
        f"the image is over the {limit} byte limit; downscale it",
        f"over {limit} bytes",
    )


def empty() -> FetchError:
    return FetchError("empty_image", "the image has no bytes; publish a non-empty file", "empty")

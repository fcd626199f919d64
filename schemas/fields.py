"""The field types and checks that messages share: identifiers, hashes, probabilities,
captions, times in UTC, image URIs and base64 bytes, and what a consumed record offers."""

from __future__ import annotations

import binascii
from datetime import UTC, datetime
from typing import Annotated, Protocol
from urllib.parse import urlsplit

import pybase64
from pydantic import AfterValidator, Field

from schemas.limits import ALLOWED_URI_SCHEMES, MAX_CAPTION_CHARS, MAX_ID_CHARS

_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]*$"
_SHA256_PATTERN = r"^[0-9a-f]{64}$"

Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS, pattern=_ID_PATTERN)]
Sha256 = Annotated[str, Field(pattern=_SHA256_PATTERN)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Caption = Annotated[str, Field(max_length=MAX_CAPTION_CHARS)]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    # A time without a zone (what datetime.utcnow().isoformat() gives) is read as UTC, so every
    # time compares with every other; one with a zone is converted to UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDateTime = Annotated[datetime, AfterValidator(_as_utc)]
"""A point in time, always in UTC; a value without a zone is read as UTC."""


class ConsumedRecord(Protocol):
    """What a Kafka client's consumed record offers (kafka-python's ConsumerRecord fits)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


def decode_b64(value: str) -> bytes:
    try:
        return pybase64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not valid base64 ({exc})") from None


def check_uri(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ALLOWED_URI_SCHEMES:
        allowed = ", ".join(sorted(ALLOWED_URI_SCHEMES))
        raise ValueError(
            f"URI scheme {parts.scheme or '(none)'!r} is not allowed; use one of {allowed}"
        )
    if parts.scheme == "file" and not parts.path:
        raise ValueError("file URI has no path")
    if parts.scheme in {"http", "https", "s3"} and not parts.netloc:
        raise ValueError(f"{parts.scheme} URI has no host or bucket")
    return value

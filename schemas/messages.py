"""Pydantic models of every message on the aigis topics.

| topic | model | key |
| --- | --- | --- |
| aigis.images | ImageEvent | event_id |
| aigis.verdicts | Verdict | event_id |
| aigis.review | ReviewItem | event_id |
| aigis.review-decisions | ReviewDecision | image_sha256 |
| aigis.pseudo-labels | PseudoLabel | image_sha256 |
| aigis.dlq | DeadLetter | the original key |

Every model carries ``schema_version``; a reader rejects versions it does not know instead of
guessing. Models are frozen and forbid unknown fields so a typo never passes silently.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Literal, Protocol, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.labels import GENERATORS, Decision
from schemas.limits import (
    ALLOWED_URI_SCHEMES,
    MAX_CAPTION_CHARS,
    MAX_ID_CHARS,
    MAX_INLINE_IMAGE_BYTES,
    MAX_URI_CHARS,
)

SCHEMA_VERSION: Literal[1] = 1
"""The only version this code reads and writes."""

_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]*$"
_SHA256_PATTERN = r"^[0-9a-f]{64}$"

Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS, pattern=_ID_PATTERN)]
Sha256 = Annotated[str, Field(pattern=_SHA256_PATTERN)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Caption = Annotated[str, Field(max_length=MAX_CAPTION_CHARS)]


def utc_now() -> datetime:
    return datetime.now(UTC)


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


class Message(BaseModel):
    """Base of every message: frozen, strict about unknown fields, versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    schema_version: Literal[1] = SCHEMA_VERSION


def _decode_b64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not valid base64 ({exc})") from None


def _check_uri(value: str) -> str:
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


class ImageSource(Message):
    """An image given inline (base64) or by reference (URI); exactly one of the two."""

    image_b64: str | None = Field(default=None, description="the image file's bytes, base64")
    image_uri: str | None = Field(
        default=None, max_length=MAX_URI_CHARS, description="file, http(s) or s3 URI"
    )

    @field_validator("image_b64")
    @classmethod
    def _valid_b64(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # Check the size before decoding so a huge payload costs no memory.
        if len(value) > (MAX_INLINE_IMAGE_BYTES * 4) // 3 + 4:
            raise ValueError(
                f"inline image exceeds {MAX_INLINE_IMAGE_BYTES} bytes; publish it by URI instead"
            )
        raw = _decode_b64(value)
        if not raw:
            raise ValueError("inline image is empty")
        if len(raw) > MAX_INLINE_IMAGE_BYTES:
            raise ValueError(
                f"inline image is {len(raw)} bytes, over the {MAX_INLINE_IMAGE_BYTES} byte limit; "
                "publish it by URI instead"
            )
        return value

    @field_validator("image_uri")
    @classmethod
    def _valid_uri(cls, value: str | None) -> str | None:
        return None if value is None else _check_uri(value)

    @model_validator(mode="after")
    def _exactly_one_image(self) -> Self:
        if (self.image_b64 is None) == (self.image_uri is None):
            raise ValueError("give exactly one of image_b64 and image_uri")
        return self

    def inline_bytes(self) -> bytes | None:
        """The decoded inline image, or None when the image is given by URI."""
        return None if self.image_b64 is None else base64.b64decode(self.image_b64)


class ImageEvent(ImageSource):
    """A request to screen one image (topic ``aigis.images``, key ``event_id``)."""

    event_id: Identifier
    caption: Caption | None = None
    external_id: Identifier | None = Field(
        default=None, description="the producer's own id, echoed back"
    )
    source: Identifier | None = Field(
        default=None, description="the producer or tenant, echoed back"
    )
    produced_at: datetime | None = Field(
        default=None, description="when the producer sent it (for latency)"
    )

    @classmethod
    def inline(cls, event_id: str, image: bytes, **fields: object) -> ImageEvent:
        """Build an event that carries ``image`` inline."""
        return cls(event_id=event_id, image_b64=base64.b64encode(image).decode("ascii"), **fields)


class Timings(Message):
    """Where the time of one event went, in milliseconds."""

    fetch_ms: float = 0.0
    cache_ms: float = 0.0
    serving_ms: float = 0.0
    total_ms: float = 0.0
    end_to_end_ms: float | None = Field(
        default=None, description="produced_at to verdict, if known"
    )


class Verdict(Message):
    """The detector's answer for one event (topic ``aigis.verdicts``, key ``event_id``)."""

    event_id: Identifier
    external_id: Identifier | None = None
    source: Identifier | None = None
    image_sha256: Sha256
    p_ai: Probability
    decision: Decision
    generator: str = Field(min_length=1, max_length=64, description="a generator name or 'unknown'")
    generator_probs: dict[str, Probability] = Field(default_factory=dict)
    model_name: str = Field(min_length=1, max_length=128)
    model_version: str = Field(min_length=1, max_length=64)
    cached: bool = False
    timings: Timings = Field(default_factory=Timings)
    scored_at: datetime = Field(default_factory=utc_now)


class ReviewItem(Message):
    """A verdict a person should check (topic ``aigis.review``, key ``event_id``).

    Carries what a reviewer needs to see the image: its URI when the producer gave one, else the
    inline bytes; and the caption.
    """

    verdict: Verdict
    caption: Caption | None = None
    image_uri: str | None = Field(default=None, max_length=MAX_URI_CHARS)
    image_b64: str | None = None

    @field_validator("image_uri")
    @classmethod
    def _valid_uri(cls, value: str | None) -> str | None:
        return None if value is None else _check_uri(value)


class Labelled(ImageSource):
    """An image with Task A and Task B labels; ``label_b`` indexes ``generators``."""

    image_sha256: Sha256
    label_a: Literal[0, 1]
    label_b: int = Field(ge=0)
    generators: tuple[str, ...] = GENERATORS

    @model_validator(mode="after")
    def _consistent_labels(self) -> Self:
        if self.label_b >= len(self.generators):
            raise ValueError(f"label_b {self.label_b} is outside 0..{len(self.generators) - 1}")
        if (self.label_a == 0) != (self.label_b == 0):
            raise ValueError("label_b must be 0 (real) exactly when label_a is 0 (human)")
        return self


class ReviewDecision(Labelled):
    """A reviewer's label for an image (topic ``aigis.review-decisions``, key ``image_sha256``).

    ``label_b`` indexes ``generators`` (the CT2 list by default); it is 0 (real) exactly when
    ``label_a`` is 0. The image travels with the decision so the label store can keep it even
    when it never saw a pseudo-label for it.
    """

    caption: Caption | None = None
    reviewer: Identifier
    event_id: Identifier | None = None
    note: str | None = Field(default=None, max_length=2_000)
    decided_at: datetime = Field(default_factory=utc_now)


class PseudoLabel(Labelled):
    """A confident verdict kept for retraining.

    Topic ``aigis.pseudo-labels``, key ``image_sha256``.
    """

    confidence_a: Probability
    confidence_b: Probability
    caption: Caption | None = None
    event_id: Identifier
    source: Identifier | None = None
    model_name: str = Field(min_length=1, max_length=128)
    model_version: str = Field(min_length=1, max_length=64)
    labelled_at: datetime = Field(default_factory=utc_now)


class DeadLetter(Message):
    """A message the pipeline could not process (topic ``aigis.dlq``, key = the original key).

    Holds the original bytes untouched so it can be replayed once the cause is fixed.
    """

    reason: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    detail: str = Field(max_length=4_000)
    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    original_key_b64: str | None = None
    original_value_b64: str
    event_id: str | None = None
    rejected_at: datetime = Field(default_factory=utc_now)

    def original_value(self) -> bytes:
        return base64.b64decode(self.original_value_b64)

    @classmethod
    def for_record(
        cls, record: ConsumedRecord, reason: str, detail: str, event_id: str | None = None
    ) -> DeadLetter:
        """The dead letter of a consumed record: its bytes and position untouched, and why."""
        return cls(
            reason=reason,
            detail=detail[:4_000],
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            original_key_b64=None if record.key is None else base64.b64encode(record.key).decode(),
            original_value_b64=base64.b64encode(record.value or b"").decode(),
            event_id=event_id,
        )

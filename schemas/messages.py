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

Version 2 adds optional fields to verdicts and review items (listed in each model's
``V2_FIELDS``); readers accept 1 and 2, and ``settings.message_version`` chooses what writers
write (:func:`schemas.codec.encode` drops the version 2 fields when writing 1).
"""

from __future__ import annotations

import base64
from typing import Annotated, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.fields import (
    Caption,
    ConsumedRecord,
    Identifier,
    Probability,
    Sha256,
    UtcDateTime,
    check_uri,
    decode_b64,
    utc_now,
)
from schemas.labels import (
    GENERATORS,
    MAX_LABEL_SET,
    OTHER_GENERATOR,
    UNKNOWN_GENERATOR,
    Decision,
    check_label_set,
    generator_problem,
)
from schemas.limits import (
    MAX_INLINE_IMAGE_BYTES,
    MAX_URI_CHARS,
)

SchemaVersion = Literal[1, 2]
SCHEMA_VERSION: Literal[2] = 2
"""The newest message version: what is written unless ``settings.message_version`` says 1."""
SCHEMA_VERSIONS: tuple[int, ...] = (1, 2)
"""Every version this code reads."""


class Message(BaseModel):
    """Base of every message: frozen, strict about unknown fields, versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    V2_FIELDS: ClassVar[frozenset[str]] = frozenset()
    """Optional fields that version 1 does not have."""

    schema_version: SchemaVersion = SCHEMA_VERSION

    @field_validator("schema_version", mode="before")
    @classmethod
    def _not_a_bool(cls, value: object) -> object:
        if isinstance(value, bool):  # True == 1 in Python; a version is a number
            raise ValueError("schema_version must be a number, not a boolean")
        return value

    @model_validator(mode="after")
    def _fields_of_its_version(self) -> Self:
        if self.schema_version == 1:
            present = sorted(f for f in self.V2_FIELDS if getattr(self, f) is not None)
            if present:
                raise ValueError(f"{', '.join(present)} need schema_version 2")
        return self


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
        raw = decode_b64(value)
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
        return None if value is None else check_uri(value)

    @model_validator(mode="after")
    def _exactly_one_image(self) -> Self:
        if (self.image_b64 is None) == (self.image_uri is None):
            raise ValueError("give exactly one of image_b64 and image_uri")
        return self

    def inline_bytes(self) -> bytes | None:
        """The decoded inline image, or None when the image is given by URI (already validated,
        so the fast strict decoder cannot fail)."""
        return None if self.image_b64 is None else decode_b64(self.image_b64)


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
    produced_at: UtcDateTime | None = Field(
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


LowerName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_./-]*$")]


class Evidence(Message):
    """One signal an image carries besides its pixels (a provenance manifest, generator
    metadata, a watermark). Evidence only ever supports "AI"; its absence says nothing."""

    kind: LowerName
    """What was read, for example ``c2pa`` or ``png_parameters``."""
    value: str = Field(max_length=512)
    generator: str | None = Field(default=None, max_length=128)
    """The generator it names, if any (a name outside the label set is kept as given)."""
    strength: LowerName
    """How much it proves, for example ``verified`` or ``claimed``."""


class NearDuplicate(Message):
    """An image already decided that this one is a re-encoded copy of."""

    image_sha256: Sha256
    distance: int = Field(ge=0, le=256)
    """Hamming distance between the perceptual hashes."""


class AppliedBands(Message):
    """The operating point a verdict was decided under."""

    ai_threshold: Probability
    human_threshold: Probability
    generator_min_confidence: Probability


class Verdict(Message):
    """The detector's answer for one event (topic ``aigis.verdicts``, key ``event_id``)."""

    V2_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {
            "evidence",
            "decided_by",
            "near_duplicate_of",
            "bands",
            "qa_sample",
            "canary",
            "generator_family",
        }
    )

    event_id: Identifier
    external_id: Identifier | None = None
    source: Identifier | None = None
    image_sha256: Sha256
    p_ai: Probability
    decision: Decision
    generator: str = Field(min_length=1, max_length=64, description="a generator name or 'unknown'")
    generator_probs: dict[str, Probability] = Field(default_factory=dict, max_length=MAX_LABEL_SET)
    """The answering model's label set, in its order, with each class's joint probability."""
    model_name: str = Field(min_length=1, max_length=128)
    model_version: str = Field(min_length=1, max_length=64)
    cached: bool = False
    timings: Timings = Field(default_factory=Timings)
    scored_at: UtcDateTime = Field(default_factory=utc_now)
    # Version 2:
    evidence: list[Evidence] | None = Field(default=None, max_length=32)
    decided_by: Literal["model", "evidence", "provenance", "human"] | None = None
    """What the decision rests on: the model's scores; evidence that raised it to review; a
    trusted provenance manifest that decided it alone; or a human review decision."""
    near_duplicate_of: NearDuplicate | None = None
    bands: AppliedBands | None = None
    qa_sample: bool | None = None
    """True when a confident verdict was also sent to review as a quality sample."""
    canary: bool | None = None
    """True when a canary version (``model_version``) answered instead of the one in service."""
    generator_family: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _generator_of_the_model(self) -> Self:
        # The model's own answer names a class of its label set (the keys of generator_probs)
        # or abstains; evidence and reviewers may name generators outside it.
        model_answer = self.decided_by in (None, "model") and bool(self.generator_probs)
        named = self.generator not in (UNKNOWN_GENERATOR, *self.generator_probs)
        if model_answer and named:
            raise ValueError(
                f"generator {self.generator[:64]!r} is not in the answering model's label set "
                f"{list(self.generator_probs)[:16]}"
            )
        return self


class ReviewItem(Message):
    """A verdict a person should check (topic ``aigis.review``, key ``event_id``).

    Carries what a reviewer needs to see the image: its URI when the producer gave one, else the
    inline bytes; and the caption.
    """

    V2_FIELDS: ClassVar[frozenset[str]] = frozenset({"qa_sample"})

    verdict: Verdict
    caption: Caption | None = None
    image_uri: str | None = Field(default=None, max_length=MAX_URI_CHARS)
    image_b64: str | None = None
    # Version 2:
    qa_sample: bool | None = None
    """True when the item is a quality sample of a confident verdict, not an uncertain one."""

    @model_validator(mode="after")
    def _same_version_as_its_verdict(self) -> Self:
        if self.verdict.schema_version > self.schema_version:
            raise ValueError("a version 1 review item cannot carry a version 2 verdict")
        return self

    @field_validator("image_uri")
    @classmethod
    def _valid_uri(cls, value: str | None) -> str | None:
        return None if value is None else check_uri(value)


class Labelled(ImageSource):
    """An image with Task A and Task B labels; ``label_b`` indexes ``generators``."""

    image_sha256: Sha256
    label_a: Literal[0, 1]
    label_b: int = Field(ge=0)
    generators: tuple[str, ...] = Field(default=GENERATORS, max_length=MAX_LABEL_SET)

    @model_validator(mode="after")
    def _consistent_labels(self) -> Self:
        check_label_set(self.generators)
        if self.label_b >= len(self.generators):
            raise ValueError(f"label_b {self.label_b} is outside 0..{len(self.generators) - 1}")
        if (self.label_a == 0) != (self.label_b == 0):
            raise ValueError("label_b must be 0 (real) exactly when label_a is 0 (human)")
        return self


class ReviewDecision(Labelled):
    """A reviewer's label for an image (topic ``aigis.review-decisions``, key ``image_sha256``).

    ``label_b`` indexes ``generators`` (the CT2 list by default); it is 0 (real) exactly when
    ``label_a`` is 0. The image travels with the decision so the label store can keep it even
    when it never saw a pseudo-label for it. A reviewer who named a generator outside the set
    gives ``other`` (``label_b`` indexes it) and ``generator_name`` keeps the name typed.
    """

    V2_FIELDS: ClassVar[frozenset[str]] = frozenset({"generator_name"})

    caption: Caption | None = None
    reviewer: Identifier
    event_id: Identifier | None = None
    note: str | None = Field(default=None, max_length=2_000)
    decided_at: UtcDateTime = Field(default_factory=utc_now)
    # Version 2:
    generator_name: str | None = Field(default=None, max_length=64)
    """The generator the reviewer named when the label set has no class for it."""

    @model_validator(mode="after")
    def _name_only_for_other(self) -> Self:
        if self.generator_name is None:
            return self
        problem = generator_problem(self.generator_name)
        if problem is not None:
            raise ValueError(f"generator_name: {problem}")
        if self.generators[self.label_b] != OTHER_GENERATOR:
            raise ValueError(f"generator_name is kept only with the {OTHER_GENERATOR!r} class")
        return self


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
    labelled_at: UtcDateTime = Field(default_factory=utc_now)


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
    rejected_at: UtcDateTime = Field(default_factory=utc_now)

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

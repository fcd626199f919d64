"""Human review labels as durable overrides, by image hash: the one format that the review
console (which writes them) and the worker (which reads them before its cache) share.

Redis key ``{redis.override_prefix}:{image_sha256}``, no expiry, value :class:`HumanLabel` as
JSON. The console's database is the record; Redis holds a copy the console rewrites at start, so
losing Redis (or an eviction) loses nothing that the console does not restore.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.fields import Identifier, Sha256
from schemas.labels import Decision


class HumanLabel(BaseModel):
    """What a reviewer said an image is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_sha256: Sha256
    label_a: int = Field(ge=0, le=1)
    generator: str = Field(min_length=1, max_length=64)
    """``real`` when ``label_a`` is 0; else the generator named, or ``unknown``."""
    decision_id: Identifier
    reviewer: Identifier

    @property
    def decision(self) -> Decision:
        return Decision.AI_GENERATED if self.label_a else Decision.HUMAN

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes) -> HumanLabel | None:
        """The label stored in ``data``, or None when it is not one (read as no override)."""
        try:
            return cls.model_validate_json(data)
        except (ValidationError, ValueError):
            return None


def override_key(prefix: str, image_sha256: str) -> str:
    return f"{prefix}:{image_sha256}"

"""Decision bands per source: the worker's own, or a source's where settings give it some."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from schemas.decision import Bands as OperatingPoint


class Bands(BaseModel):
    """An operating point: the thresholds of :mod:`schemas.decision`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ai_threshold: float
    human_threshold: float
    generator_min_confidence: float


class SourceBands(BaseModel):
    """The decision bands of one source (tenant); a field left out is the worker's own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ai_threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    human_threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    generator_min_confidence: Annotated[float, Field(ge=0, le=1)] | None = None


def resolve_bands(worker: OperatingPoint, own: SourceBands | None) -> Bands:
    """``own`` bands, each field left out taken from ``worker``'s."""

    def pick(name: str) -> float:
        value = getattr(own, name) if own is not None else None
        return float(getattr(worker, name) if value is None else value)

    return Bands(
        ai_threshold=pick("ai_threshold"),
        human_threshold=pick("human_threshold"),
        generator_min_confidence=pick("generator_min_confidence"),
    )

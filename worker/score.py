"""What the model said about one input, as the worker keeps it: from the server or the cache."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from schemas.messages import Evidence


class ResultLike(Protocol):
    """The fields of ``serving.client.wire.ItemResult`` the worker reads."""

    p_ai: float
    generator_probs: dict[str, float]
    confidence_a: float
    confidence_b: float
    model_name: str
    model_version: str
    signals: tuple[dict[str, str | None], ...]


@dataclass(frozen=True, slots=True)
class Score:
    """The model's raw output for one input.

    Decisions are not stored: the worker derives them from its own bands each time, so a cached
    score follows a change of thresholds. ``generator_probs`` keeps the model's generator order.
    ``evidence`` is what the image carried besides its pixels, kept with the score so that a
    cache hit answers with it.
    """

    p_ai: float
    generator_probs: dict[str, float]
    confidence_a: float
    confidence_b: float
    model_name: str
    model_version: str
    evidence: tuple[Evidence, ...] = ()

    @classmethod
    def of(cls, result: ResultLike) -> Score:
        return cls(
            p_ai=float(result.p_ai),
            generator_probs={k: float(v) for k, v in result.generator_probs.items()},
            confidence_a=float(result.confidence_a),
            confidence_b=float(result.confidence_b),
            model_name=result.model_name,
            model_version=str(result.model_version),
            evidence=tuple(_evidence(result.signals)),
        )

    def to_json(self) -> bytes:
        fields = asdict(self)
        fields["evidence"] = [e.model_dump(mode="json") for e in self.evidence]
        return json.dumps(fields, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Score | None:
        """The score stored in ``data``, or None when it is not one (a miss, not an error)."""
        try:
            fields: dict[str, Any] = json.loads(data)
            evidence = tuple(Evidence.model_validate(e) for e in fields.pop("evidence", ()))
            score = cls(**fields, evidence=evidence)
        except (ValueError, TypeError, ValidationError):
            return None
        numbers = (score.p_ai, score.confidence_a, score.confidence_b)
        if not all(isinstance(x, int | float) and 0.0 <= x <= 1.0 for x in numbers):
            return None
        return score if isinstance(score.generator_probs, dict) else None


def _evidence(signals: tuple[dict[str, str | None], ...]) -> list[Evidence]:
    """The signals the server read that make valid evidence (others are dropped: the server
    is trusted to send them, not to send them well-formed)."""
    evidence = []
    for signal in signals:
        try:
            evidence.append(Evidence.model_validate(signal))
        except ValidationError:
            continue
    return evidence

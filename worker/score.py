"""What the model said about one input, as the worker keeps it: from the server or the cache."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Protocol


class ResultLike(Protocol):
    """The fields of ``serving.client.wire.ItemResult`` the worker reads."""

    p_ai: float
    generator_probs: dict[str, float]
    confidence_a: float
    confidence_b: float
    model_name: str
    model_version: str


@dataclass(frozen=True, slots=True)
class Score:
    """The model's raw output for one input.

    Decisions are not stored: the worker derives them from its own bands each time, so a cached
    score follows a change of thresholds. ``generator_probs`` keeps the model's generator order.
    """

    p_ai: float
    generator_probs: dict[str, float]
    confidence_a: float
    confidence_b: float
    model_name: str
    model_version: str

    @classmethod
    def of(cls, result: ResultLike) -> Score:
        return cls(
            p_ai=float(result.p_ai),
            generator_probs={k: float(v) for k, v in result.generator_probs.items()},
            confidence_a=float(result.confidence_a),
            confidence_b=float(result.confidence_b),
            model_name=result.model_name,
            model_version=str(result.model_version),
        )

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Score | None:
        """The score stored in ``data``, or None when it is not one (a miss, not an error)."""
        try:
            fields: dict[str, Any] = json.loads(data)
            score = cls(**fields)
        except (ValueError, TypeError):
            return None
        numbers = (score.p_ai, score.confidence_a, score.confidence_b)
        if not all(isinstance(x, int | float) and 0.0 <= x <= 1.0 for x in numbers):
            return None
        return score if isinstance(score.generator_probs, dict) else None

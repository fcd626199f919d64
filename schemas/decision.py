"""The decision rule: what a p_ai and generator probabilities mean. One module, torch-free.

The model server (for callers that ask it directly) and the worker (whose verdict is the
authority) both answer through these functions, so the two cannot drift apart.

- ``decide``: ``ai_generated`` at or above ``ai_threshold``, ``human`` at or below
  ``human_threshold``, ``needs_review`` in between.
- ``name_generator``: ``real`` (the model's first class) when the decision is human; otherwise the
  generator with the highest P(generator | AI), or ``unknown`` when that conditional probability is
  below ``generator_min_confidence``. Generator probabilities travel as the joint distribution
  (``real: 1 - p_ai``, ``g: p_ai * P(g | AI)``), so the conditional is ``joint / p_ai``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from schemas.labels import UNKNOWN_GENERATOR, Decision


class Bands(Protocol):
    """The operating point: the worker's settings and a checkpoint's config both have one."""

    @property
    def ai_threshold(self) -> float: ...
    @property
    def human_threshold(self) -> float: ...
    @property
    def generator_min_confidence(self) -> float: ...


def decide(p_ai: float, bands: Bands) -> Decision:
    """The decision band ``p_ai`` falls in."""
    if p_ai >= bands.ai_threshold:
        return Decision.AI_GENERATED
    if p_ai <= bands.human_threshold:
        return Decision.HUMAN
    return Decision.NEEDS_REVIEW


def joint_probs(
    p_ai: float, generator_given_ai: Sequence[float], generators: Sequence[str]
) -> dict[str, float]:
    """The joint generator distribution from p_ai and P(generator | AI) (entry 0, real, ignored);
    keys in the model's order, real first. Sums to one."""
    probs = {generators[0]: 1.0 - p_ai}
    probs.update(
        {name: p_ai * float(generator_given_ai[i]) for i, name in enumerate(generators) if i}
    )
    return probs


def name_generator(
    decision: Decision, p_ai: float, joint: Mapping[str, float], bands: Bands
) -> str:
    """The generator a verdict names; ``joint`` lists the real class first (the model's order)."""
    names = list(joint)
    if not names:
        return UNKNOWN_GENERATOR
    if decision is Decision.HUMAN:
        return names[0]
    candidates = names[1:]
    if not candidates or p_ai <= 0.0:
        return UNKNOWN_GENERATOR
    best = max(candidates, key=lambda name: joint[name])
    return best if joint[best] / p_ai >= bands.generator_min_confidence else UNKNOWN_GENERATOR

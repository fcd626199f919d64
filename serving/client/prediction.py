"""What a detector's scores mean: the Prediction of one image. Imports neither torch nor numpy.

How scores are read (the same for every architecture):

- ``p_ai = sigmoid(logit_a / temperature)``, the calibrated probability of AI generation;
  the decision compares it with the checkpoint's thresholds.
- Head B is trained on AI-generated items only, so it answers "which generator, given AI".
  Its softmax over the generators (index 0, real, excluded) is P(generator | AI), and the
  reported ``generator_probs`` are the joint distribution: ``real: 1 - p_ai`` and
  ``g: p_ai * P(g | AI)``, which sums to one.
- ``generator`` is ``real`` when the decision is human (as in the CT2 competition scoring), else
  the most likely generator given AI, or ``unknown`` when that conditional probability is below
  the checkpoint's ``generator_min_confidence``.
- ``confidence_b`` is the top joint generator probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.labels import UNKNOWN_GENERATOR, Decision
from serving.model.config import DetectorConfig


@dataclass(frozen=True)
class Prediction:
    """The detector's answer for one image."""

    p_ai: float
    """Calibrated P(AI-generated)."""
    decision: str
    """``ai_generated``, ``human`` or ``needs_review`` from the checkpoint's thresholds."""
    generator: str
    """A generator name, ``real`` when the decision is human, ``unknown`` when B abstains."""
    generator_probs: dict[str, float]
    """Every generator of the checkpoint -> joint probability (sums to one)."""
    confidence_a: float
    """max(p_ai, 1 - p_ai)."""
    confidence_b: float
    """Top generator probability."""


def read_scores(
    p_ai: float, generator_given_ai: Sequence[float], config: DetectorConfig
) -> Prediction:
    """The Prediction for calibrated ``p_ai`` and P(generator | AI) (entry 0, real, ignored)."""
    if p_ai >= config.ai_threshold:
        decision = Decision.AI_GENERATED
    elif p_ai <= config.human_threshold:
        decision = Decision.HUMAN
    else:
        decision = Decision.NEEDS_REVIEW
    names = config.generators
    probs = {names[0]: 1.0 - p_ai}
    probs.update({name: p_ai * float(generator_given_ai[i]) for i, name in enumerate(names) if i})
    best = max(range(1, len(names)), key=lambda i: generator_given_ai[i])
    if decision == Decision.HUMAN:
        generator = names[0]
    elif generator_given_ai[best] < config.generator_min_confidence:
        generator = UNKNOWN_GENERATOR
    else:
        generator = names[best]
    return Prediction(
        p_ai=p_ai,
        decision=decision.value,
        generator=generator,
        generator_probs=probs,
        confidence_a=max(p_ai, 1.0 - p_ai),
        confidence_b=max(probs.values()),
    )

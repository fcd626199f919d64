"""What a detector's scores mean: the Prediction of one image. Imports neither torch nor numpy.

How scores are read (the same for every architecture):

- ``p_ai = sigmoid(logit_a / temperature)``, the calibrated probability of AI generation;
  the decision compares it with the thresholds.
- Head B is trained on AI-generated items only, so it answers "which generator, given AI".
  Its softmax over the generators (index 0, real, excluded) is P(generator | AI), and the
  reported ``generator_probs`` are the joint distribution: ``real: 1 - p_ai`` and
  ``g: p_ai * P(g | AI)``, which sums to one.
- ``decision`` and ``generator`` follow the rule of :mod:`schemas.decision` under the
  checkpoint's bands (the worker applies the same rule under its own).
- ``confidence_b`` is the top joint generator probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.decision import Bands, decide, joint_probs, name_generator


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
    p_ai: float, generator_given_ai: Sequence[float], generators: Sequence[str], bands: Bands
) -> Prediction:
    """The Prediction for calibrated ``p_ai`` and P(generator | AI) (entry 0, real, ignored),
    answered by the decision rule of :mod:`schemas.decision`."""
    probs = joint_probs(p_ai, generator_given_ai, generators)
    decision = decide(p_ai, bands)
    return Prediction(
        p_ai=p_ai,
        decision=decision.value,
        generator=name_generator(decision, p_ai, probs, bands),
        generator_probs=probs,
        confidence_a=max(p_ai, 1.0 - p_ai),
        confidence_b=max(probs.values()),
    )

"""The decision rule: what a p_ai and generator probabilities mean. One module, torch-free.

The model server (for callers that ask it directly) and the worker (whose verdict is the
authority) both answer through these functions, so the two cannot drift apart.

- ``decide``: ``ai_generated`` at or above ``ai_threshold``, ``human`` at or below
  ``human_threshold``, ``needs_review`` in between.
- ``name_generator``: ``real`` (the model's first class) when the decision is human; otherwise the
  generator with the highest P(generator | AI), or ``unknown`` when that conditional probability is
  below ``generator_min_confidence``. Generator probabilities travel as the joint distribution
  (``real: 1 - p_ai``, ``g: p_ai * P(g | AI)``), so the conditional is ``joint / p_ai``.
- ``fuse``: what evidence besides the pixels does to the model's decision. Evidence only ever
  supports "AI". A ``verified`` signal (a C2PA manifest whose signature validates, chains to a
  trust anchor and declares generative AI) decides ``ai_generated`` alone
  (``decided_by: provenance``) when the policy lets it; any signal of a strength in
  ``review_strengths`` raises ``human`` to ``needs_review`` (``decided_by: evidence``); nothing
  lowers a decision. When the verdict is not ``human`` and the model names no generator
  (``unknown``), the strongest signal's generator is named.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

from schemas.labels import UNKNOWN_GENERATOR, Decision
from schemas.settings_evidence import Strength


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


STRENGTHS: tuple[str, ...] = get_args(Strength)
"""Evidence strengths, strongest first (what each means: :mod:`schemas.settings_evidence`)."""

VERIFIED = "verified"


class Signal(Protocol):
    """The parts of a piece of evidence the rule reads (``schemas.messages.Evidence`` fits)."""

    @property
    def generator(self) -> str | None: ...
    @property
    def strength(self) -> str: ...


class EvidencePolicy(Protocol):
    """What evidence may do: the worker's ``settings.evidence`` has it."""

    @property
    def provenance_decides(self) -> bool: ...
    @property
    def review_strengths(self) -> Collection[str]: ...


@dataclass(frozen=True)
class Fused:
    """A decision after evidence: the decision, the generator named, and what it rests on."""

    decision: Decision
    generator: str
    decided_by: Literal["model", "evidence", "provenance"]


def _rank(signal: Signal) -> int:
    return STRENGTHS.index(signal.strength) if signal.strength in STRENGTHS else len(STRENGTHS)


def proven(evidence: Sequence[Signal], policy: EvidencePolicy) -> bool:
    """Whether ``evidence`` decides ``ai_generated`` alone, whatever the model would say."""
    return policy.provenance_decides and any(s.strength == VERIFIED for s in evidence)


def fuse(
    decision: Decision, generator: str, evidence: Sequence[Signal], policy: EvidencePolicy
) -> Fused:
    """The model's ``decision`` and ``generator`` with ``evidence`` taken into account."""
    ranked = sorted(evidence, key=_rank)
    named = next((s.generator for s in ranked if s.generator), None)
    if proven(ranked, policy):
        verified = next(
            (s.generator for s in ranked if s.strength == VERIFIED and s.generator), None
        )
        model_named = generator not in (UNKNOWN_GENERATOR, "real") and generator
        return Fused(
            Decision.AI_GENERATED, verified or model_named or UNKNOWN_GENERATOR, "provenance"
        )
    decided_by: Literal["model", "evidence"] = "model"
    if decision is Decision.HUMAN and any(s.strength in policy.review_strengths for s in ranked):
        decision, generator, decided_by = Decision.NEEDS_REVIEW, UNKNOWN_GENERATOR, "evidence"
    if decision is not Decision.HUMAN and generator == UNKNOWN_GENERATOR and named:
        generator = named
    return Fused(decision, generator, decided_by)

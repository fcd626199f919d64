"""Verdicts from scores, and where each message goes. Pure functions: no I/O, no clock reads
beyond what the caller passes in."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from schemas import Decision, ImageEvent, PseudoLabel, ReviewItem, Timings, Verdict
from schemas.codec import encode
from schemas.decision import EvidencePolicy, decide, fuse, name_generator
from schemas.labels import UNKNOWN_GENERATOR
from schemas.messages import AppliedBands, Evidence, NearDuplicate
from schemas.overrides import HumanLabel
from schemas.settings import Settings, WorkerSettings
from schemas.settings_evidence import EvidenceSettings
from worker.runtime.checkpoint import Output
from worker.score import Score

REAL = "real"
"""The generator name of human-made images; Task B names it whenever Task A says human."""


def build_verdict(
    event: ImageEvent,
    image_sha256: str,
    score: Score,
    *,
    cached: bool,
    timings: Timings,
    settings: WorkerSettings,
    evidence: Sequence[Evidence] = (),
    near_duplicate_of: NearDuplicate | None = None,
    policy: EvidencePolicy | None = None,
) -> Verdict:
    """The verdict on ``score`` under the bands of the event's source, with ``evidence`` fused
    in by the rule of :func:`schemas.decision.fuse` (``policy``: the evidence settings)."""
    bands = settings.bands_for(event.source)
    decision = decide(score.p_ai, bands)
    generator = name_generator(decision, score.p_ai, score.generator_probs, bands)
    fused = fuse(decision, generator, evidence, policy or EvidenceSettings())
    return Verdict(
        event_id=event.event_id,
        external_id=event.external_id,
        source=event.source,
        image_sha256=image_sha256,
        p_ai=score.p_ai,
        decision=fused.decision,
        generator=fused.generator[:64],
        generator_probs=score.generator_probs,
        model_name=score.model_name,
        model_version=score.model_version,
        cached=cached,
        timings=timings,
        evidence=list(evidence),
        decided_by=fused.decided_by,
        near_duplicate_of=near_duplicate_of,
        bands=AppliedBands(**bands.model_dump()),
    )


def human_verdict(
    event: ImageEvent,
    image_sha256: str,
    label: HumanLabel,
    model: tuple[str, str],
    timings: Timings,
    near_duplicate_of: NearDuplicate | None = None,
) -> Verdict:
    """The verdict of an image a reviewer has labelled, or of a near-duplicate of one
    (``near_duplicate_of``): the human's answer, not the model's (``decided_by: human``;
    ``p_ai`` is the label, 1.0 or 0.0; no generator probabilities). ``model``: the served
    model's name and version."""
    return Verdict(
        event_id=event.event_id,
        external_id=event.external_id,
        source=event.source,
        image_sha256=image_sha256,
        p_ai=float(label.label_a),
        decision=label.decision,
        generator=label.generator,
        model_name=model[0],
        model_version=model[1],
        cached=True,
        timings=timings,
        decided_by="human",
        near_duplicate_of=near_duplicate_of,
    )


def proven_verdict(
    event: ImageEvent,
    image_sha256: str,
    evidence: Sequence[Evidence],
    model: tuple[str, str],
    timings: Timings,
    policy: EvidencePolicy,
) -> Verdict:
    """The verdict of an image whose provenance decided it and that the model did not score
    (``evidence.skip_model_when_proven``): ``ai_generated``, ``decided_by: provenance``, ``p_ai``
    1.0 as the manifest claims and no generator probabilities (the model's verdicts always
    have them); ``model`` names the model in service, which was not asked."""
    fused = fuse(Decision.NEEDS_REVIEW, UNKNOWN_GENERATOR, evidence, policy)
    if fused.decided_by != "provenance":
        raise ValueError("the evidence does not decide this image alone")
    return Verdict(
        event_id=event.event_id,
        external_id=event.external_id,
        source=event.source,
        image_sha256=image_sha256,
        p_ai=1.0,
        decision=fused.decision,
        generator=fused.generator[:64],
        model_name=model[0],
        model_version=model[1],
        timings=timings,
        evidence=list(evidence),
        decided_by="provenance",
    )


def end_to_end_ms(event: ImageEvent, now: datetime) -> float | None:
    """Milliseconds from the producer's ``produced_at`` to ``now``; None when not given."""
    if event.produced_at is None:
        return None
    return max(0.0, (now - event.produced_at).total_seconds() * 1000)


def pseudo_label(
    verdict: Verdict, event: ImageEvent, score: Score, settings: WorkerSettings
) -> PseudoLabel | None:
    """The pseudo-label for a confident verdict, or None.

    Confident: a decision of the model's own (not review, not one that evidence decided), a
    named generator, and both Task A and Task B confidence at least ``pseudo_label_confidence``.
    The label uses the model's own generator list, which must put ``real`` first (the CT2
    encoding) for labels to be comparable.
    """
    threshold = settings.pseudo_label_confidence
    if (
        verdict.decision is Decision.NEEDS_REVIEW
        or verdict.decided_by not in (None, "model")
        or verdict.generator == UNKNOWN_GENERATOR
        or score.confidence_a < threshold
        or score.confidence_b < threshold
    ):
        return None
    generators = tuple(score.generator_probs)
    if not generators or generators[0] != REAL or verdict.generator not in generators:
        return None
    return PseudoLabel(
        image_b64=event.image_b64,
        image_uri=event.image_uri,
        image_sha256=verdict.image_sha256,
        label_a=1 if verdict.decision is Decision.AI_GENERATED else 0,
        label_b=generators.index(verdict.generator),
        generators=generators,
        confidence_a=score.confidence_a,
        confidence_b=score.confidence_b,
        caption=event.caption,
        event_id=event.event_id,
        source=event.source,
        model_name=score.model_name,
        model_version=score.model_version,
    )


def quality_sampled(verdict: Verdict, settings: WorkerSettings) -> bool:
    """Whether a confident verdict is also sent to review as a quality sample: its source's rate
    (else ``qa_sample_rate``) decides, by a hash of the event id, so the choice is the same on
    every retry of the event and needs no random state."""
    if verdict.decision is Decision.NEEDS_REVIEW or verdict.decided_by == "human":
        return False
    rate = settings.qa_sample_rates.get(verdict.source or "", settings.qa_sample_rate)
    if rate <= 0.0:
        return False
    draw = int.from_bytes(hashlib.sha256(verdict.event_id.encode()).digest()[:8], "big")
    return draw / 2**64 < rate


def route(
    verdict: Verdict,
    event: ImageEvent,
    score: Score | None,
    settings: Settings,
) -> list[Output]:
    """The records one verdict produces: the verdict, and a review item or a pseudo-label, as
    message version ``settings.message_version``. A human's verdict (``score`` None) produces
    the verdict alone: its label is already a review decision."""
    topics, version = settings.topics, settings.message_version
    key = verdict.event_id.encode()
    sample = score is not None and quality_sampled(verdict, settings.worker)
    if sample:
        verdict = verdict.model_copy(update={"qa_sample": True})
    outputs = [Output(topics.verdicts, key, encode(verdict, version))]
    if score is None:
        return outputs
    if verdict.decision is Decision.NEEDS_REVIEW or sample:
        # The reviewer sees the image by its URI when the producer gave one, else inline.
        review = ReviewItem(
            verdict=verdict,
            caption=event.caption,
            image_uri=event.image_uri,
            image_b64=event.image_b64,
            qa_sample=True if sample else None,
        )
        outputs.append(Output(topics.review, key, encode(review, version)))
        if not sample:
            return outputs
    label = pseudo_label(verdict, event, score, settings.worker)
    if label is not None:
        outputs.append(
            Output(
                topics.pseudo_labels,
                verdict.image_sha256.encode(),
                encode(label, version),
            )
        )
    return outputs

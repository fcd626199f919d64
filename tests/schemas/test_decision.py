"""The decision rule: the model server and the worker answer the same scores the same way."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas import Decision, ImageEvent, Timings
from schemas.decision import decide, joint_probs, name_generator
from schemas.labels import GENERATORS
from schemas.settings import WorkerSettings
from serving.client.prediction import read_scores
from worker.route import build_verdict
from worker.score import Score

pytestmark = pytest.mark.unit

BANDS = WorkerSettings()


def conditional(top: int, top_p: float) -> list[float]:
    """P(generator | AI) with ``top_p`` on generator ``top`` and the rest shared evenly."""
    rest = (1.0 - top_p) / (len(GENERATORS) - 2)
    return [0.0, *(top_p if i == top else rest for i in range(1, len(GENERATORS)))]


def worker_answer(p_ai: float, given_ai: list[float]) -> tuple[str, str]:
    """What the worker's verdict says for the scores the server would send."""
    probs = joint_probs(p_ai, given_ai, GENERATORS)
    score = Score(p_ai, probs, max(p_ai, 1 - p_ai), max(probs.values()), "detector", "1")
    event = ImageEvent.inline("ev-1", b"\x89PNG", produced_at=datetime.now(UTC))
    verdict = build_verdict(
        event, "ab" * 32, score, cached=False, timings=Timings(), settings=BANDS
    )
    return verdict.decision.value, verdict.generator


@pytest.mark.parametrize("p_ai", [0.0, 0.05, 0.2, 0.21, 0.5, 0.79, 0.8, 0.85, 0.95, 1.0])
@pytest.mark.parametrize("top_p", [0.2, 0.45, 0.5, 0.55, 0.9])
def test_server_and_worker_agree(p_ai: float, top_p: float) -> None:
    given_ai = conditional(3, top_p)
    server = read_scores(p_ai, given_ai, GENERATORS, BANDS)
    assert (server.decision, server.generator) == worker_answer(p_ai, given_ai)


def test_generator_confidence_is_conditional_on_ai() -> None:
    # P(sd3 | AI) = 0.55 passes a 0.5 minimum even though the joint p_ai * 0.55 = 0.47 does not.
    given_ai = conditional(3, 0.55)
    assert read_scores(0.85, given_ai, GENERATORS, BANDS).generator == "sd3"
    assert worker_answer(0.85, given_ai) == ("ai_generated", "sd3")


def test_rule_on_edges() -> None:
    assert decide(0.8, BANDS) is Decision.AI_GENERATED
    assert decide(0.2, BANDS) is Decision.HUMAN
    assert name_generator(Decision.NEEDS_REVIEW, 0.0, {"real": 1.0, "sd21": 0.0}, BANDS) == (
        "unknown"
    )
    assert name_generator(Decision.AI_GENERATED, 0.9, {}, BANDS) == "unknown"
    assert name_generator(Decision.HUMAN, 0.1, {"real": 0.9, "sd21": 0.1}, BANDS) == "real"

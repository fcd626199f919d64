"""Pieces of ``aigis retrain`` that need no services: intervals, the printed decision, the card."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from aigis.cli.labels import parse_duration
from aigis.retrain import CycleResult, _rewrite_card
from serving.model.config import DetectorConfig
from training.gate import decide, new_class_scores, with_new_classes
from training.registry import DataLineage, ModelVersion

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6h", 21_600),
        ("30m", 1_800),
        ("1h30m", 5_400),
        ("90s", 90),
        ("1d", 86_400),
        ("0.5h", 1_800),
    ],
)
def test_intervals(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["6", "six hours", "6h junk", "0m", ""])
def test_bad_intervals_are_refused(text: str) -> None:
    with pytest.raises(typer.Exit):
        parse_duration(text)


def test_the_decision_shows_both_models_metrics_and_the_data() -> None:
    champion = {"task_a.f1": 0.5, "task_b.f1_weighted": 0.4, "task_a.auroc": 0.6}
    candidate = {"task_a.f1": 0.7, "task_b.f1_weighted": 0.45, "task_a.auroc": 0.7}
    gate = decide(candidate, champion, metric="task_a.f1", min_improvement=0.01, max_regression=0.0)
    record = ModelVersion(
        version="3",
        name="detector",
        status="promoted",
        parent="2",
        metrics=candidate,
        champion_metrics=champion,
        gate=gate,
        data=DataLineage(
            base="smoke",
            holdout="smoke",
            store_url="/s",
            snapshot_id="abc",
            counts={"selected": 9, "usable": 7, "skipped.unreachable_uri": 2},
        ),
    )
    text = CycleResult("promoted", "2", gate.summary(), record).describe()
    assert "candidate 3 (from 2) PROMOTED" in text
    assert "task_a.f1" in text
    assert "0.5000" in text
    assert "0.7000" in text
    assert "snapshot abc; selected=9, skipped.unreachable_uri=2, usable=7" in text
    assert text.endswith("in service: 3")
    skipped = CycleResult("skipped", "2", "the label store has not changed").describe()
    assert skipped == "retrain: skipped (the label store has not changed); 2 stays in service"


def test_a_promoted_candidates_card_shows_its_hold_out_scores(tmp_path: Path) -> None:
    DetectorConfig(name="det", version="2", text_config={}, vision_config={}).save(tmp_path)
    point = {
        "human_threshold": 0.2,
        "ai_threshold": 0.8,
        "false_positive_rate": 0.25,
        "recall": 0.5,
        "precision": 0.8,
        "miss_rate": 0.125,
        "review_rate": 0.3,
        "errors": 3,
    }
    task_a = {"accuracy": 0.75, "precision": 0.8, "recall": 0.5, "f1": 0.6153, "auroc": 0.9}
    report = {"n": 13, "task_a": {**task_a, "f1_weighted": 0.7}, "task_b": None, "ece": 0.1}
    _rewrite_card(tmp_path, {**report, "operating_point": point}, "ct2/ + human labels of s1")
    card = (tmp_path / "README.md").read_text()
    assert "- Evaluation: `ct2/ + human labels of s1`, test split, 13 items" in card
    assert "| Task A F1 | 0.6153 |" in card
    assert "| worker | 0.20 | 0.80 | 0.2500 | 0.5000 | 0.8000 | 0.1250 | 0.3000 |" in card
    _rewrite_card(tmp_path / "none", {"f1": 1.0}, "x")  # another evaluator's shape: no card
    assert not (tmp_path / "none").exists()


def test_a_new_class_is_reported_beside_the_old_classes_comparison_and_can_only_veto() -> None:
    champion = {"task_a.f1": 0.70, "task_b.f1_weighted": 0.60}
    candidate = {"task_a.f1": 0.72, "task_b.f1_weighted": 0.61}
    gate = decide(candidate, champion, metric="task_a.f1", min_improvement=0.01, max_regression=0.0)
    # The candidate's report on the new class's held-out examples: 3 of 4 named it.
    report = {
        "task_a": {"recall": 1.0, "f1": 1.0},
        "task_b": {"per_class": {"flux/1-dev": {"recall": 0.75, "support": 4}}},
    }
    scores = new_class_scores(report, "flux/1-dev")
    assert scores == {"examples": 4.0, "recall_b": 0.75, "recall_a": 1.0}
    reported = with_new_classes(gate, {"flux/1-dev": scores}, min_recall=0.5)
    assert gate.promote
    assert reported.promote
    assert reported.new_classes == {"flux/1-dev": scores}
    assert "new class flux/1-dev: 0.7500 of 4 held-out examples named it" in reported.summary()
    # A new class its own hold-out does not show learned keeps the candidate out of service.
    vetoed = with_new_classes(gate, {"flux/1-dev": scores}, min_recall=0.8)
    assert not vetoed.promote
    assert "below the recall asked" in vetoed.summary()
    # A class the report does not know scores nothing rather than failing the cycle.
    assert new_class_scores({}, "x") == {"examples": 0.0, "recall_b": 0.0}
    # Records written before new classes existed still read.
    assert (
        ModelVersion.model_validate_json(
            ModelVersion(version="3", name="d", status="rejected", gate=gate).model_dump_json()
        ).gate
        == gate
    )

"""Pieces of ``aigis retrain`` that need no services: intervals and the printed decision."""

from __future__ import annotations

import pytest
import typer

from aigis.cli.labels import parse_duration
from aigis.retrain import CycleResult
from training.gate import decide
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

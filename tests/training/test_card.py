"""The model card: front matter and sections from known training and evaluation reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from serving.model.config import DetectorConfig
from training.card import render_card, training_summary, write_card

pytestmark = pytest.mark.unit

CONFIG = DetectorConfig(name="det", version="3", text_config={}, vision_config={}, temperature=1.25)
TRAINING: dict[str, Any] = {
    "data": "smoke",
    "init_from": None,
    "seed": 0,
    "steps": 120,
    "seconds": 42.0,
    "hyperparameters": {"epochs": 3, "batch_size": 32, "learning_rate": 0.001},
    "validation": {"f1_a": 0.875, "accuracy_a": 0.9, "nll_a": 0.5, "nll_a_calibrated": 0.4},
}
POINT = {
    "human_threshold": 0.2,
    "ai_threshold": 0.8,
    "false_positive_rate": 0.2,
    "recall": 0.4,
    "precision": 2 / 3,
    "miss_rate": 0.2,
    "review_rate": 0.4,
    "errors": 2,
}
EVALUATION: dict[str, Any] = {
    "data": {
        "spec": "gold/",
        "split": "test",
        "generators": ["real", "sdxl"],
        "holdout_classes": None,
        "limit": None,
    },
    "n": 10,
    "task_a": {
        "accuracy": 0.7,
        "precision": 0.75,
        "recall": 0.6,
        "f1": 0.6667,
        "f1_weighted": 0.69,
        "auroc": None,
    },
    "task_b": None,
    "ece": 0.125,
    "operating_point": POINT,
    "operating_points_by_source": {"tenant-a": {**POINT, "ai_threshold": 0.9, "recall": 0.2}},
    "thresholds": [{**POINT, "ai_threshold": 0.5, "false_positive_rate": 0.4}],
}


def _front_matter(card: str) -> dict[str, Any]:
    head, _, _ = card.removeprefix("---\n").partition("\n---\n")
    matter = yaml.safe_load(head)
    assert isinstance(matter, dict)
    return matter


def test_a_trained_checkpoint_card_holds_training_numbers_and_no_evaluation() -> None:
    card = render_card(CONFIG, TRAINING, None)
    matter = _front_matter(card)
    assert matter["license"] == "other"
    assert "aigis" in matter["tags"]
    assert "fused" in matter["tags"]
    assert "model-index" not in matter
    assert "metrics" not in matter
    for section in ("Data", "Metrics", "Operating points", "Calibration", "Robustness"):
        assert f"\n## {section}\n" in card
    assert "| Task A F1 | 0.8750 |" in card
    assert "| Task A AUROC | - |" in card  # not recorded by training: a dash, not a number
    assert "Temperature 1.2500" in card
    assert "0.5000 before, 0.4000 after" in card
    assert "human <= 0.2, AI >= 0.8" in card
    assert "not measured until" in card
    assert "`smoke`; 120 steps" in card
    assert "Evaluation: none yet" in card
    assert "random weights" in card
    assert "simulated fingerprints" in card


def test_an_evaluated_card_lists_only_computed_metrics_and_every_band() -> None:
    card = render_card(CONFIG, None, EVALUATION, figures=["roc.png", "reliability.png"])
    matter = _front_matter(card)
    assert matter["metrics"] == ["accuracy", "f1", "precision", "recall"]  # AUROC was None
    (result,) = matter["model-index"][0]["results"]
    assert result["dataset"] == {"name": "gold/", "type": "gold/", "split": "test"}
    assert {"type": "f1", "value": 0.6667, "name": "Task A F1"} in result["metrics"]
    assert "Training: not recorded" in card
    assert "| worker | 0.20 | 0.80 | 0.2000 | 0.4000 | 0.6667 | 0.2000 | 0.4000 |" in card
    assert "| source `tenant-a` | 0.20 | 0.90 | 0.2000 | 0.2000 |" in card
    assert "| 0.20 | 0.50 | 0.4000 |" in card  # the single-threshold row
    assert "not over that source's traffic" in card
    assert "![roc](roc.png)" in card
    assert "![reliability](reliability.png)" in card
    assert "det.png" not in card  # only figures that were drawn are linked
    assert "calibration error on the evaluation set: 0.1250" in card
    assert "`--no-robustness`" in card


def test_write_card_reads_what_the_trainer_left(tmp_path: Path) -> None:
    assert training_summary(tmp_path) is None
    path = write_card(tmp_path, CONFIG, None)
    assert path == tmp_path / "README.md"
    assert path.read_text().startswith("---\n")


def test_robustness_rows_are_the_clean_scores_then_each_degraded_copy() -> None:
    degraded = {
        "n": 10,
        "task_a": {"recall": 0.4, "f1": 0.5, "auroc": 0.625},
        "task_b": None,
        "ece": 0.25,
    }
    evaluation = {**EVALUATION, "robustness": {"jpeg_q75": degraded}}
    card = render_card(CONFIG, TRAINING, evaluation)
    assert "| clean | 0.6000 | 0.6667 | - | - | 0.1250 |" in card
    assert "| jpeg_q75 | 0.4000 | 0.5000 | 0.6250 | - | 0.2500 |" in card
    assert "Not measured" not in card.split("## Robustness")[1]

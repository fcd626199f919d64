"""Operating points against a score set whose answers were computed by hand, and the
``aigis thresholds`` commands on an evaluate-style predictions file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from training.gate import SERVING_FPR, decide
from training.thresholds import (
    at,
    operating_point,
    single_thresholds,
    suggest,
    sweep,
    write_csv,
)

pytestmark = pytest.mark.unit

AIGIS = str(Path(sys.executable).with_name("aigis"))
HUMANS = [0.05, 0.1, 0.3, 0.6, 0.85]
AIS = [0.15, 0.5, 0.7, 0.9, 0.95]
P_AI = HUMANS + AIS
LABELS = [0] * 5 + [1] * 5


def test_the_serving_bands_cost_what_was_counted_by_hand() -> None:
    point = at(sweep(P_AI, LABELS), 0.2, 0.8)
    assert point is not None
    # Called AI: 0.85 (human), 0.9, 0.95; called human: 0.05, 0.1 and 0.15 (AI); 4 in between.
    assert point.false_positive_rate == pytest.approx(1 / 5)
    assert point.recall == pytest.approx(2 / 5)
    assert point.precision == pytest.approx(2 / 3)
    assert point.miss_rate == pytest.approx(1 / 5)
    assert point.review_rate == pytest.approx(4 / 10)
    assert point.errors == 2


def test_the_suggestion_meets_both_limits_with_the_fewest_errors() -> None:
    points = sweep(P_AI, LABELS)
    best = suggest(points, max_fpr=0.0, max_review_rate=0.5)
    assert best is not None
    # AI must be above 0.85 (no false positive); at most 5 of the 8 below it may be reviewed, so
    # the human band takes 0.15 (one miss) at least, and up to 0.3 with no more misses.
    assert (best.human_threshold, best.ai_threshold) == (0.30, 0.86)
    assert (best.errors, best.recall, best.review_rate) == (1, 0.4, 0.4)
    assert suggest(points, max_fpr=0.0, max_review_rate=0.0) is not None  # all decided
    # A human-made image scored 1.0 is called AI at every threshold.
    assert suggest(sweep([1.0, 0.5], [0, 1]), max_fpr=0.0, max_review_rate=1.0) is None


def test_sweep_refuses_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="same length"):
        sweep([0.1, 0.2], [1])


def test_the_commands_read_evaluates_predictions(tmp_path: Path) -> None:
    pq.write_table(pa.table({"p_ai": P_AI, "label_a": LABELS}), tmp_path / "predictions.parquet")
    done = subprocess.run(
        [
            AIGIS,
            "thresholds",
            "suggest",
            "-p",
            str(tmp_path),
            "--max-fpr",
            "0",
            "--max-review-rate=.5",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "AIGIS_WORKER__HUMAN_THRESHOLD=0.30 AIGIS_WORKER__AI_THRESHOLD=0.86" in done.stdout
    assert "serving now:  human <= 0.20, AI >= 0.80: false-positive rate 0.2000" in done.stdout
    certain = tmp_path / "certain.parquet"
    pq.write_table(pa.table({"p_ai": [1.0, 0.5], "label_a": [0, 1]}), certain)
    impossible = subprocess.run(
        [
            AIGIS,
            "thresholds",
            "suggest",
            "-p",
            str(certain),
            "--max-fpr",
            "0",
            "--max-review-rate=1",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert impossible.returncode == 1
    assert "no band pair" in impossible.stderr
    csv_file = tmp_path / "pairs.csv"
    swept = subprocess.run(
        [AIGIS, "thresholds", "sweep", "-p", str(tmp_path), "-o", str(csv_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert swept.returncode == 0, swept.stderr
    assert len(csv_file.read_text().splitlines()) == 1 + 101 * 102 // 2


def test_one_operating_point_is_the_sweeps() -> None:
    assert operating_point(P_AI, LABELS, 0.2, 0.8) == at(sweep(P_AI, LABELS), 0.2, 0.8)


def test_the_gate_refuses_a_candidate_whose_false_positive_rate_at_the_bands_rises() -> None:
    champion = {"task_a.f1": 0.80, SERVING_FPR: 0.010}
    better_but_accusing = {"task_a.f1": 0.90, SERVING_FPR: 0.030}
    common = {"metric": "task_a.f1", "min_improvement": 0.005, "max_regression": 0.01}
    refused = decide(better_but_accusing, champion, **common, max_fpr_increase=0.01)
    assert not refused.promote
    assert SERVING_FPR in refused.regressions
    assert "false-positive rate at the serving bands rises 0.0100 -> 0.0300" in refused.summary()
    assert decide(better_but_accusing, champion, **common, max_fpr_increase=0.05).promote
    assert decide(better_but_accusing, champion, **common).promote  # not asked to check


def test_one_threshold_calls_a_score_on_it_ai_as_the_rule_does() -> None:
    # human == ai == 0.5: 0.5 is called AI (the rule checks AI first), never both.
    point = at(sweep([0.5, 0.5, 0.2], [0, 1, 0]), 0.5, 0.5)
    assert point is not None
    assert (point.false_positive_rate, point.recall, point.miss_rate) == (0.5, 1.0, 0.0)
    assert point.review_rate == 0.0
    assert point.errors == 1


def test_single_thresholds_step_the_ai_threshold_at_the_serving_human_one(
    tmp_path: Path,
) -> None:
    points = sweep(P_AI, LABELS)
    rows = single_thresholds(points, 0.2, 0.1)
    assert [(p.human_threshold, p.ai_threshold) for p in rows[:4]] == [
        (0.0, 0.0), (0.1, 0.1), (0.2, 0.2), (0.2, 0.3)
    ]  # fmt: skip
    assert len(rows) == 11
    # AI >= 0.5 with human <= 0.2: called AI 0.6, 0.85 (human) and 0.5, 0.7, 0.9, 0.95 (AI);
    # called human 0.05, 0.1 and 0.15 (AI); only 0.3 goes to review.
    half = rows[5]
    assert (half.false_positive_rate, half.recall, half.miss_rate) == (0.4, 0.8, 0.2)
    assert half.review_rate == pytest.approx(0.1)
    written = write_csv(points, tmp_path / "pairs.csv").read_text().splitlines()
    assert written[0].startswith("human_threshold,ai_threshold,false_positive_rate")
    assert len(written) == 1 + len(points) == 1 + 5151

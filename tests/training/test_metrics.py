"""Metric code against answers computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from training import metrics

pytestmark = pytest.mark.unit

# Task A: three humans, five AI. Predictions at 0.5: TP 3, FP 1, FN 2, TN 2.
LABEL_A = np.array([0, 0, 0, 1, 1, 1, 1, 1])
P_AI = np.array([0.1, 0.3, 0.7, 0.9, 0.8, 0.6, 0.4, 0.2])


def test_task_a_known_answer() -> None:
    got = metrics.task_a(LABEL_A, P_AI)
    assert got["accuracy"] == pytest.approx(5 / 8)
    assert got["precision"] == pytest.approx(3 / 4)
    assert got["recall"] == pytest.approx(3 / 5)
    assert got["f1"] == pytest.approx(2 / 3)
    # F1 of human is 4/7 (precision 2/4, recall 2/3), weighted by supports 3 and 5.
    assert got["f1_weighted"] == pytest.approx((3 * 4 / 7 + 5 * 2 / 3) / 8)
    # 11 of the 15 (AI, human) pairs are ranked the right way round.
    assert got["auroc"] == pytest.approx(11 / 15)


def test_task_a_on_one_class_has_no_auroc() -> None:
    got = metrics.task_a(np.array([1, 1, 1]), np.array([0.9, 0.2, 0.7]))
    assert got["auroc"] is None
    assert got["recall"] == pytest.approx(2 / 3)
    assert got["precision"] == pytest.approx(1.0)


def test_task_b_is_forced_to_real_where_a_says_human() -> None:
    generators = ("real", "g1", "g2")
    label_b = np.array([0, 0, 1, 2, 2, 1])
    p_ai = np.array([0.2, 0.7, 0.9, 0.3, 0.8, 0.95])
    given_ai = np.array(
        [[0, 0.6, 0.4], [0, 0.2, 0.8], [0, 0.9, 0.1], [0, 0.1, 0.9], [0, 0.3, 0.7], [0, 0.4, 0.6]]
    )
    pred_b = metrics.predict_b(metrics.predict_a(p_ai), given_ai)
    assert pred_b.tolist() == [0, 2, 1, 0, 2, 2]  # items 0 and 3 forced to real

    got = metrics.task_b(label_b, pred_b, generators)
    assert got["accuracy"] == pytest.approx(0.5)
    assert got["per_class"]["real"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    )
    assert got["per_class"]["g1"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    )
    assert got["per_class"]["g2"]["f1"] == pytest.approx(0.4)
    assert got["f1_weighted"] == pytest.approx((0.5 + 2 / 3 + 0.4) / 3)

    scored = metrics.score(np.array([0, 0, 1, 1, 1, 1]), label_b, p_ai, given_ai, generators)
    assert scored["task_b"] == got
    assert set(scored) == {"task_a", "task_b", "ece"}


def test_ece_known_answer() -> None:
    labels = np.array([0, 1, 0, 1])
    p_ai = np.array([0.1, 0.9, 0.9, 0.5])
    # Bins of width 1/15: {0.1} off by 0.1, {0.9, 0.9} off by 0.4, {0.5} off by 0.5.
    assert metrics.ece(labels, p_ai) == pytest.approx(0.1 / 4 + 0.4 * 2 / 4 + 0.5 / 4)
    table = metrics.reliability(labels, p_ai)
    assert len(table) == 15
    assert sum(row["count"] for row in table) == 4
    assert metrics.ece(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0


def test_confusion_rows_are_true_classes() -> None:
    assert metrics.confusion(np.array([0, 1, 1]), np.array([1, 1, 0]), 3) == [
        [0, 1, 0],
        [1, 1, 0],
        [0, 0, 0],
    ]

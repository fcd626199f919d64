"""Metrics of both tasks, scored as the CT2 / Defactify competition scores them.

Task A is read from p_ai at 0.5 (the decision thresholds of a checkpoint add a review band; that
is an operating choice reported separately, not the classifier's quality). Task B is scored
competition-style: wherever Task A's prediction says human, the Task B prediction is class 0
("real"), whatever the generator head says. Built on scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

A_THRESHOLD: Final[float] = 0.5
ECE_BINS: Final[int] = 15


def predict_a(p_ai: np.ndarray, threshold: float = A_THRESHOLD) -> np.ndarray:
    """Task A predictions: 1 where ``p_ai >= threshold``."""
    return (np.asarray(p_ai) >= threshold).astype(np.int64)


def predict_b(pred_a: np.ndarray, generator_given_ai: np.ndarray) -> np.ndarray:
    """Task B predictions, competition-style: 0 where Task A says human, else the top generator.

    ``generator_given_ai`` is (n, G) with column 0 the real class, which is never the argmax
    of an AI prediction.
    """
    scores = np.asarray(generator_given_ai)
    top = np.argmax(scores[:, 1:], axis=1) + 1 if scores.shape[0] else np.zeros(0, np.int64)
    return np.where(np.asarray(pred_a) == 1, top, 0).astype(np.int64)


def task_a(label_a: np.ndarray, p_ai: np.ndarray) -> dict[str, float | None]:
    """accuracy, precision, recall and F1 of class AI; F1 weighted over both classes; AUROC.

    AUROC is None when ``label_a`` holds one class only (held-out evaluation of AI classes).
    """
    y = np.asarray(label_a)
    pred = predict_a(p_ai)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y, pred, labels=[1], average="binary", pos_label=1, zero_division=0
    )
    auroc = float(roc_auc_score(y, p_ai)) if len(np.unique(y)) == 2 else None
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "f1_weighted": float(f1_score(y, pred, labels=[0, 1], average="weighted", zero_division=0)),
        "auroc": auroc,
    }


def task_b(label_b: np.ndarray, pred_b: np.ndarray, generators: Sequence[str]) -> dict[str, Any]:
    """accuracy, F1 weighted by support, and precision / recall / F1 / support per class."""
    labels = list(range(len(generators)))
    precision, recall, f1, support = precision_recall_fscore_support(
        label_b, pred_b, labels=labels, zero_division=0
    )
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(generators)
    }
    return {
        "accuracy": float(accuracy_score(label_b, pred_b)),
        "f1_weighted": float(
            f1_score(label_b, pred_b, labels=labels, average="weighted", zero_division=0)
        ),
        "per_class": per_class,
    }


def reliability(
    label_a: np.ndarray, p_ai: np.ndarray, bins: int = ECE_BINS
) -> list[dict[str, float | int]]:
    """Per bin of p_ai (equal width over [0, 1]): its range, count, mean p_ai, fraction AI."""
    p = np.asarray(p_ai, dtype=np.float64)
    y = np.asarray(label_a, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1], right=True), 0, bins - 1)
    table = []
    for b in range(bins):
        inside = index == b
        count = int(inside.sum())
        table.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": count,
                "mean_p_ai": float(p[inside].mean()) if count else 0.0,
                "fraction_ai": float(y[inside].mean()) if count else 0.0,
            }
        )
    return table


def ece(label_a: np.ndarray, p_ai: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of p_ai: sum over bins of share * |mean p_ai - fraction AI|."""
    total = len(np.asarray(p_ai))
    if total == 0:
        return 0.0
    return float(
        sum(
            row["count"] / total * abs(row["mean_p_ai"] - row["fraction_ai"])
            for row in reliability(label_a, p_ai, bins)
        )
    )


def confusion(label: np.ndarray, pred: np.ndarray, classes: int) -> list[list[int]]:
    """Confusion matrix, rows true class, columns predicted class."""
    matrix = confusion_matrix(label, pred, labels=list(range(classes)))
    return [[int(value) for value in row] for row in matrix]


def score(
    label_a: np.ndarray,
    label_b: np.ndarray,
    p_ai: np.ndarray,
    generator_given_ai: np.ndarray,
    generators: Sequence[str],
) -> dict[str, Any]:
    """``task_a``, ``task_b`` (competition-style) and ``ece`` of one set of predictions."""
    pred_b = predict_b(predict_a(p_ai), generator_given_ai)
    return {
        "task_a": task_a(label_a, p_ai),
        "task_b": task_b(label_b, pred_b, generators),
        "ece": ece(label_a, p_ai),
    }

"""Figures as PNG files: confusion matrices, the reliability diagram, and the ROC,
precision-recall and DET curves of p_ai (evaluation); loss and metric curves (training).

Uses matplotlib's object API (``Figure.savefig`` renders PNG with Agg), never pyplot, so it
changes no global backend and works on machines without a display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure
from scipy.stats import norm
from sklearn.metrics import det_curve, precision_recall_curve, roc_auc_score, roc_curve

from training.thresholds import OperatingPoint


def confusion_png(
    matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str
) -> Path:
    """Draw a confusion matrix (rows true class, columns predicted) with counts in the cells."""
    counts = np.asarray(matrix, dtype=np.int64)
    side = max(3.2, 0.9 * len(classes) + 1.6)
    figure = Figure(figsize=(side + 0.8, side), layout="constrained")
    axes = figure.add_subplot()
    # Colour by share of the true class, so a small class is as readable as a large one.
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    shown = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(shown, ax=axes, label="share of true class")
    ticks = np.arange(len(classes))
    axes.set_xticks(ticks, labels=list(classes), rotation=45, ha="right")
    axes.set_yticks(ticks, labels=list(classes))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for row in range(counts.shape[0]):
        for col in range(counts.shape[1]):
            colour = "white" if shares[row, col] > 0.6 else "black"
            axes.text(col, row, str(counts[row, col]), ha="center", va="center", color=colour)
    return _save(figure, path)


def reliability_png(
    table: Sequence[Mapping[str, float | int]], ece: float, path: Path, title: str
) -> Path:
    """Draw the reliability diagram of p_ai: fraction AI against mean p_ai per bin."""
    figure = Figure(figsize=(5.0, 5.6), layout="constrained")
    top, bottom = figure.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    lower = np.array([row["lower"] for row in table], dtype=np.float64)
    upper = np.array([row["upper"] for row in table], dtype=np.float64)
    count = np.array([row["count"] for row in table], dtype=np.float64)
    observed = np.array([row["fraction_ai"] for row in table], dtype=np.float64)
    used = count > 0
    width = upper - lower
    top.bar(
        lower[used],
        observed[used],
        width=width[used],
        align="edge",
        edgecolor="black",
        color="tab:blue",
        alpha=0.8,
        label="fraction AI",
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    top.set_ylim(0, 1)
    top.set_ylabel("fraction AI-generated")
    top.set_title(f"{title} (ECE {ece:.3f})")
    top.legend(loc="upper left")
    bottom.bar(lower, count, width=width, align="edge", color="tab:grey", edgecolor="black")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("predicted p_ai")
    bottom.set_ylabel("items")
    return _save(figure, path)


def curves_png(
    label_a: npt.ArrayLike,
    p_ai: npt.ArrayLike,
    output: Path,
    marks: Mapping[str, OperatingPoint] | None = None,
) -> list[Path]:
    """Draw ``roc.png``, ``precision_recall.png`` and ``det.png`` of p_ai into ``output``.

    ``marks`` are named operating points (decision bands) whose AI calls are marked on each
    curve. Needs both classes in ``label_a``; draws nothing and returns [] otherwise.
    """
    y = np.asarray(label_a).astype(np.int64)
    p = np.asarray(p_ai, dtype=np.float64)
    if np.unique(y).size < 2:
        return []
    marks = marks or {}
    fpr, tpr, _ = roc_curve(y, p)
    roc = _curve(f"ROC (AUROC {roc_auc_score(y, p):.3f})", "false-positive rate", "recall")
    roc.axes[0].plot(fpr, tpr, color="tab:blue")
    roc.axes[0].plot([0, 1], [0, 1], linestyle="--", color="grey")
    precision, recall, _ = precision_recall_curve(y, p)
    pr = _curve("Precision-recall of AI", "recall", "precision")
    pr.axes[0].plot(recall, precision, color="tab:blue", drawstyle="steps-post")
    pr.axes[0].axhline(y.mean(), linestyle="--", color="grey")
    det_fpr, fnr, _ = det_curve(y, p)
    det = _curve("DET", "false-positive rate", "miss rate")
    # Normal-deviate axes, clipped so that a rate of 0 or 1 stays on the plot.
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95])
    det.axes[0].plot(_probit(det_fpr), _probit(fnr), color="tab:blue")
    for set_ticks in (det.axes[0].set_xticks, det.axes[0].set_yticks):
        set_ticks(_probit(ticks), labels=[f"{t:g}" for t in ticks])
    for name, point in marks.items():
        label = f"{name}: AI at {point.ai_threshold:.2f}"
        fp_rate, recall_at = point.false_positive_rate, point.recall
        roc.axes[0].plot(fp_rate, recall_at, "o", label=label)
        pr.axes[0].plot(recall_at, point.precision, "o", label=label)
        det.axes[0].plot(_probit(fp_rate), _probit(1.0 - recall_at), "o", label=label)
    paths = []
    for figure, name in ((roc, "roc.png"), (pr, "precision_recall.png"), (det, "det.png")):
        if marks:
            figure.axes[0].legend(loc="best", fontsize="small")
        paths.append(_save(figure, output / name))
    return paths


TRAINING_METRICS: Final[tuple[str, ...]] = (
    "f1_a",
    "accuracy_a",
    "auroc_a",
    "f1_b_weighted",
    "accuracy_b",
)
"""The validation metrics drawn in ``metrics.png`` (those the Trainer logged)."""


def training_curves_png(log_history: Sequence[Mapping[str, Any]], output: Path) -> list[Path]:
    """Draw ``loss.png`` (training and validation loss by step) and ``metrics.png`` (the
    validation metrics by step) into ``output`` from a Trainer's ``state.log_history``.

    A figure with nothing to draw (a run too short to log) is not written.
    """
    loss = _series(log_history, "loss")
    eval_loss = _series(log_history, "eval_loss")
    paths = []
    if loss or eval_loss:
        figure = _curve("Loss", "optimiser step", "loss")
        for points, label in ((loss, "training"), (eval_loss, "validation")):
            if points:
                figure.axes[0].plot(*zip(*points, strict=True), marker=".", label=label)
        figure.axes[0].legend(loc="best")
        paths.append(_save(figure, output / "loss.png"))
    curves = {name: _series(log_history, f"eval_{name}") for name in TRAINING_METRICS}
    if any(curves.values()):
        figure = _curve("Validation metrics", "optimiser step", "score")
        for name, points in curves.items():
            if points:
                figure.axes[0].plot(*zip(*points, strict=True), marker="o", label=name)
        figure.axes[0].set_ylim(0, 1.02)
        figure.axes[0].legend(loc="best", fontsize="small")
        paths.append(_save(figure, output / "metrics.png"))
    return paths


def _series(log_history: Sequence[Mapping[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) of every log entry holding a finite ``key``."""
    return [
        (int(entry.get("step", 0)), float(entry[key]))
        for entry in log_history
        if isinstance(entry.get(key), int | float) and np.isfinite(entry[key])
    ]


def _curve(title: str, x: str, y: str) -> Figure:
    figure = Figure(figsize=(5.0, 5.0), layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_xlabel(x)
    axes.set_ylabel(y)
    axes.grid(alpha=0.3)
    return figure


def _probit(rate: npt.ArrayLike) -> np.ndarray:
    return np.asarray(norm.ppf(np.clip(np.asarray(rate, dtype=np.float64), 1e-4, 1 - 1e-4)))


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path

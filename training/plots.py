"""Evaluation figures as PNG files: confusion matrices and the reliability diagram.

Uses matplotlib's object API (``Figure.savefig`` renders PNG with Agg), never pyplot, so it
changes no global backend and works on machines without a display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


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


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path

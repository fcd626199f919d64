"""Honest robustness: degrading both classes alike exposes a format shortcut.

The smoke set's ordinary splits carry the shortcut real data sets carry (real items JPEG,
generated ones PNG); ``smoke-jpeg`` holds the same items in one format. A detector that learned
"compression traces mean real" looks good on ``smoke`` and loses its AI recall on ``smoke-jpeg``
and under every JPEG degradation of ``aigis evaluate --robustness``.

``smoke-shortcut`` makes the format the easiest cue for a real model to learn: the tiny detector
trained on it without augmentation takes the shortcut, and one trained with the format-balanced
degradations (``augment_degrade_p``) does much less.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from schemas.labels import GENERATORS
from serving.model.predictor import Predictor, Scores
from training.augment import AugmentConfig
from training.data import load_split
from training.evaluate import EvalOptions, evaluate_model
from training.trainer import TrainRequest, train

BLOCK: int = 8
SHORTCUT_THRESHOLD: float = 1.28
"""Blockiness above which the shortcut detector says real; between the smoke set's generated
items (PNG, then the loaders' JPEG q95: at most about 1.35) and its real ones (JPEG q30-60
first: mostly above 1.3)."""


def blockiness(image: Image.Image) -> float:
    """Mean step across 8-pixel block edges over the mean step inside blocks: about 1 for an
    image never coarsely JPEG-compressed, more for one that was."""
    grey = np.asarray(image.convert("L"), dtype=np.float64)
    edges, inside = [], []
    for steps in (np.abs(np.diff(grey, axis=1)), np.abs(np.diff(grey, axis=0)).T):
        at_edge = (np.arange(steps.shape[1]) % BLOCK) == BLOCK - 1
        edges.append(steps[:, at_edge].mean())
        inside.append(steps[:, ~at_edge].mean())
    return float(np.mean(edges) / max(np.mean(inside), 1e-9))


class ShortcutDetector:
    """A detector that learned the shortcut and nothing else: no JPEG traces means AI."""

    generators = GENERATORS

    def scores(self, images: Sequence[Image.Image], captions: Sequence[str | None]) -> Scores:
        traces = np.array([blockiness(image) for image in images])
        p_ai = 1.0 / (1.0 + np.exp(20.0 * (traces - SHORTCUT_THRESHOLD)))
        given = np.full((len(images), len(self.generators)), 1.0 / len(self.generators))
        return Scores(p_ai, given, np.zeros(len(images)))


@pytest.mark.slow
def test_the_both_classes_report_exposes_a_format_shortcut() -> None:
    options = EvalOptions(robustness=True, degradations=("jpeg_q75",))
    ordinary = evaluate_model(ShortcutDetector(), load_split("smoke", "test"), options)  # type: ignore[arg-type]
    both = evaluate_model(ShortcutDetector(), load_split("smoke-jpeg", "test"))  # type: ignore[arg-type]
    # On the data set as delivered the shortcut looks like a detector (measured: accuracy 0.91,
    # AI recall 0.89) ...
    recall = ordinary["task_a"]["recall"]
    assert ordinary["task_a"]["accuracy"] >= 0.8, ordinary["task_a"]
    assert recall >= 0.8, ordinary["task_a"]
    # ... and once both classes share a format (recall 0.08), or get one JPEG re-encode (0.39),
    # its AI recall is gone.
    assert both["task_a"]["recall"] <= 0.3, both["task_a"]
    assert ordinary["robustness"]["jpeg_q75"]["task_a"]["recall"] <= recall - 0.3
    # Real items are the same bytes in both variants: only the AI side moved.
    real_ordinary = ordinary["confusion"]["task_a"][0]
    assert both["confusion"]["task_a"][0] == real_ordinary


NO_AUGMENT = AugmentConfig(crop_p=0.0, resize_p=0.0, blur_p=0.0, noise_p=0.0, jpeg_p=0.0)
"""Every augmentation off; the balanced run adds the format-balanced degradations alone."""
BALANCED = replace(NO_AUGMENT, degrade_p=0.8)
SHORTCUT_RUN = TrainRequest(
    data="smoke-shortcut", output=Path(), epochs=10, seed=0, report_to="none", progress=False
)
"""Both runs: the tiny fused detector, ten epochs, seed 0; each sets its output and augmentation."""


def _trained_and_evaluated(output: Path, augment: AugmentConfig) -> dict[str, Any]:
    train(replace(SHORTCUT_RUN, output=output, augment_config=augment))
    predictor = Predictor.from_checkpoint(output)
    return {
        "shortcut": evaluate_model(predictor, load_split("smoke-shortcut", "test")),
        "both_jpeg": evaluate_model(
            predictor,
            load_split("smoke-shortcut-jpeg", "test"),
            EvalOptions(robustness=True, degradations=("jpeg_q50",)),
        ),
    }


@pytest.mark.slow
def test_format_balanced_augmentation_takes_the_shortcut_away(tmp_path: Path) -> None:
    plain = _trained_and_evaluated(tmp_path / "plain", NO_AUGMENT)
    balanced = _trained_and_evaluated(tmp_path / "balanced", BALANCED)

    def recalls(report: dict[str, Any]) -> tuple[float, float]:
        return report["shortcut"]["task_a"]["recall"], report["both_jpeg"]["task_a"]["recall"]

    plain_shortcut, plain_jpeg = recalls(plain)
    balanced_shortcut, balanced_jpeg = recalls(balanced)
    figures = {"plain": recalls(plain), "balanced": recalls(balanced)}
    # AI recall on smoke-shortcut -> on smoke-shortcut-jpeg, measured by hand with seeds 0, 1
    # and 2 (a shared machine, load average 7 to 10):
    #   without augmentation  0.787 -> 0.573, 0.913 -> 0.693, 0.973 -> 0.753 (gap 0.21 to 0.22)
    #   with the degradations 0.753 -> 0.673, 0.647 -> 0.540, 0.887 -> 0.713 (gap 0.08 to 0.17)
    # The gap shrinks with every seed, by 0.05 to 0.13; the margins below hold for all three.
    plain_gap, balanced_gap = plain_shortcut - plain_jpeg, balanced_shortcut - balanced_jpeg
    assert plain_shortcut >= 0.7, figures
    assert plain_gap >= 0.15, figures  # the plain model took the shortcut ...
    assert balanced_gap <= plain_gap - 0.03, figures  # ... the balanced one less
    # The report on the JPEG split carries each degradation too, both classes alike.
    assert set(balanced["both_jpeg"]["robustness"]) == {"jpeg_q50"}

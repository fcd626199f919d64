"""The training settings group (``AIGIS_TRAINING__``): where training reports, and how it
augments."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from schemas.settings_env import Group


class TrainingSettings(Group):
    report_to: str = "auto"
    """Where the Trainer reports losses and metrics while it runs: ``auto`` (TensorBoard when the
    ``tensorboard`` package is installed, else nowhere), ``none``, or a comma-separated list of
    the integrations transformers knows (``tensorboard``, ``mlflow``, ``wandb``, ...). Event
    files go to ``<output>/runs/``; the loss and metric curves are drawn as PNG whatever this
    says."""
    augment_degrade_p: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Probability that a training image (of either class) gets one of
    ``augment_degradations``, the degradations ``aigis evaluate --robustness`` measures; 0 (the
    default) turns them off, 0.3 is a reasonable start."""
    augment_degradations: str = "formats"
    """Comma-separated names of those degradations (``jpeg_q95``, ``jpeg_q75``, ``jpeg_q50``,
    ``resize_50``, ``resize_25``, ``crop``, ``webp``, ``screenshot``, ``noise``), ``formats``
    (the re-encodes: the three JPEGs, WebP and the screenshot) or ``all``."""

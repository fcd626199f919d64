"""The retraining settings group (``AIGIS_RETRAIN__``): the registry, the promotion gate, what a
cycle trains on, and how a generator is added."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from schemas.settings_env import Group


class RetrainSettings(Group):
    registry_dir: Path | None = None
    """Model registry (lineage, archives); default ``<state_dir>/registry``."""
    metric: Literal[
        "task_a.f1",
        "task_a.f1_weighted",
        "task_a.accuracy",
        "task_a.precision",
        "task_a.recall",
        "task_a.auroc",
        "task_b.f1_weighted",
        "task_b.accuracy",
        "ece",
    ] = "task_a.f1"
    """The metric the promotion gate compares on the gold hold-out (``ece``: lower is better)."""
    min_improvement: Annotated[float, Field(ge=0)] = 0.005
    max_regression: Annotated[float, Field(ge=0)] = 0.01
    max_fpr_increase: Annotated[float, Field(ge=0)] = 0.01
    """A candidate whose false-positive rate at the worker's bands rises by more than this on
    the gold hold-out is not promoted."""
    pseudo_label_threshold: Annotated[float, Field(ge=0, le=1)] = 0.8
    max_per_class: Annotated[int, Field(ge=1)] = 2_000
    base_data: str | None = None
    """Base training data spec of ``aigis retrain`` when ``--data`` is not given."""
    holdout: str | None = None
    """Data set whose test split is the gold hold-out (with the store's human decisions);
    default the base data."""
    epochs: Annotated[float, Field(gt=0)] | None = 1.0
    """Fine-tuning epochs per cycle; None takes the architecture's default."""
    max_steps: Annotated[int, Field(ge=1)] | None = None
    keep_served: Annotated[int, Field(ge=1)] = 2
    """Versions kept registered in TorchServe after a promotion (the new one and its rollback)."""
    canary_percent: Annotated[float, Field(gt=0, le=100)] | None = None
    """Set, a candidate that passes the gate starts as a canary answering this share of cache
    misses instead of being promoted (``aigis model canary promote`` finishes it); unset, the
    default, it is promoted at once."""
    min_usable_items: Annotated[int, Field(ge=1)] = 1
    """Fewest selected pseudo-labels whose image is usable (readable within the worker's limits
    and still hashing to the labelled image) for a cycle to train; below it the cycle stops
    before training. Unusable items are skipped and counted. Raise it so that a cycle does not
    train for hours on a handful of items."""
    min_examples_new_generator: Annotated[int, Field(ge=2)] = 20
    """Fewest human-labelled examples of a generator (decisions naming it, as its class or as
    ``other`` with the name kept) with a usable image before ``aigis retrain --add-generator``
    grows the label set by it; below it the cycle stops before training. One in four of them
    is held out, so at least one is trained on and one reported. At most ``max_per_class``
    are used."""
    min_new_class_recall: Annotated[float, Field(ge=0, le=1)] = 0.5
    """A grown candidate is promoted only when at least this share of its new class's
    held-out examples is named as that class (besides passing the usual comparison)."""

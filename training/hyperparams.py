"""Training defaults per architecture and preset; every value can be overridden on the command line.

The full-size defaults are the published ones: the NAU-QMUL fused system (AdamW, lr 2e-5, weight
decay 0.01, batch 256, 8 epochs), clip-linear (Adam, 12 epochs) and clip-contrastive (AdamW,
lr 1e-5, batch 32, 5 epochs). The ``tiny`` preset has its own, chosen by measurement on the
``smoke`` set on a 2-core CPU: its encoders start from random weights, so it needs a far higher
learning rate and small batches to learn in a few minutes (docs/training.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Final, Literal

Optimizer = Literal["adamw", "adam"]


@dataclass(frozen=True)
class Hyperparameters:
    """What the optimiser and the loop need. ``batch_size`` is global (across all processes)."""

    optimizer: Optimizer
    learning_rate: float
    weight_decay: float
    batch_size: int
    epochs: float
    warmup_ratio: float = 0.0
    """Fraction of the steps over which the learning rate ramps up linearly from 0."""
    max_grad_norm: float = 1.0


_FULL_SIZE: Final[dict[str, Hyperparameters]] = {
    "fused": Hyperparameters("adamw", 2e-5, 0.01, 256, 8),
    "clip-linear": Hyperparameters("adam", 1e-5, 0.0, 64, 12),
    "clip-contrastive": Hyperparameters("adamw", 1e-5, 0.01, 32, 5),
}

_TINY: Final[dict[str, Hyperparameters]] = {
    "fused": Hyperparameters("adamw", 1e-3, 0.01, 32, 10, warmup_ratio=0.05),
    "clip-linear": Hyperparameters("adam", 1e-3, 0.0, 32, 10, warmup_ratio=0.05),
    "clip-contrastive": Hyperparameters("adamw", 1e-3, 0.01, 32, 10, warmup_ratio=0.05),
}


def default_hyperparameters(architecture: str, preset: str) -> Hyperparameters:
    """The defaults for ``architecture`` trained from ``preset`` encoders."""
    table = _TINY if preset == "tiny" else _FULL_SIZE
    if architecture not in table:
        raise ValueError(f"unknown architecture {architecture!r}; use one of {', '.join(table)}")
    return table[architecture]


def with_overrides(
    defaults: Hyperparameters,
    *,
    learning_rate: float | None = None,
    weight_decay: float | None = None,
    batch_size: int | None = None,
    epochs: float | None = None,
) -> Hyperparameters:
    """``defaults`` with every given (non-None) value replaced."""
    given: dict[str, Any] = {
        "learning_rate": learning_rate,
        "weight_decay": weight_decay,
        "batch_size": batch_size,
        "epochs": epochs,
    }
    return replace(defaults, **{key: value for key, value in given.items() if value is not None})

"""``aigis train``, ``aigis evaluate`` and ``aigis pseudo-label``."""

from __future__ import annotations

import typer

from aigis.cli.common import not_ready


def register(app: typer.Typer) -> None:
    @app.command(help="Train a detector (fused BERT+CLIP, clip-linear or clip-contrastive).")
    def train() -> None:
        not_ready("train", "the detector family")

    @app.command(help="Evaluate a trained detector on a data set and write metrics and plots.")
    def evaluate() -> None:
        not_ready("evaluate", "the detector family")

    @app.command(
        "pseudo-label", help="Select confident predictions as pseudo-labels (the paper's step)."
    )
    def pseudo_label() -> None:
        not_ready("pseudo-label", "the detector family")

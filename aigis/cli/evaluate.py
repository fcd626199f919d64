"""``aigis evaluate`` and ``aigis pseudo-label``."""

from __future__ import annotations

import typer

from aigis.cli.common import not_ready


def register(app: typer.Typer) -> None:
    @app.command(help="Evaluate a trained detector on a data set and write metrics and plots.")
    def evaluate() -> None:
        not_ready("evaluate", "the detector family")

    @app.command(
        "pseudo-label", help="Select confident predictions as pseudo-labels (the paper's step)."
    )
    def pseudo_label() -> None:
        not_ready("pseudo-label", "the detector family")

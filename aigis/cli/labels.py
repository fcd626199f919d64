"""``aigis sink``, ``aigis retrain`` and ``aigis review``."""

from __future__ import annotations

import typer

from aigis.cli.common import not_ready


def register(app: typer.Typer) -> None:
    @app.command(help="Store pseudo-labels and review decisions in the label store.")
    def sink() -> None:
        not_ready("sink", "the label store")

    @app.command(help="Retrain from the label store and promote the result only if it is better.")
    def retrain() -> None:
        not_ready("retrain", "gated retraining")

    @app.command(help="Label uncertain images from the review topic in the terminal.")
    def review() -> None:
        not_ready("review", "human review")

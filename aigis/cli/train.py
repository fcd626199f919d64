"""``aigis train``."""

from __future__ import annotations

import typer

from aigis.cli.common import not_ready


def register(app: typer.Typer) -> None:
    @app.command(help="Train a detector (fused BERT+CLIP, clip-linear or clip-contrastive).")
    def train() -> None:
        not_ready("train", "the detector family")

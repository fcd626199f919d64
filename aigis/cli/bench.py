"""``aigis bench``."""

from __future__ import annotations

import typer

from aigis.cli.common import not_ready


def register(app: typer.Typer) -> None:
    @app.command(help="Run every benchmark and write bench/results/<date>.json and a table.")
    def bench() -> None:
        not_ready("bench", "the benchmark suite")

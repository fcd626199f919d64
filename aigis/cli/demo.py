"""``aigis demo``: the whole pipeline end to end on this machine."""

from __future__ import annotations

import typer

from aigis.cli.common import not_ready


def register(app: typer.Typer) -> None:
    @app.command(help="Run the pipeline end to end on this machine and print a summary.")
    def demo() -> None:
        not_ready("demo", "the end-to-end demo")

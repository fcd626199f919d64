"""``aigis worker``, ``aigis publish`` and ``aigis tail``."""

from __future__ import annotations

import typer

from aigis.cli.common import not_ready


def register(app: typer.Typer) -> None:
    @app.command(help="Consume image events, score them and publish verdicts.")
    def worker() -> None:
        not_ready("worker", "the streaming worker")

    @app.command(
        help="Publish images (a file, a directory, a parquet data set or `smoke`) as events."
    )
    def publish() -> None:
        not_ready("publish", "the streaming worker")

    @app.command(help="Print verdicts, review items or dead letters as they arrive.")
    def tail() -> None:
        not_ready("tail", "the streaming worker")

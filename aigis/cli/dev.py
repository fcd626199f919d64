"""``aigis dev up | down | status``: Kafka (KRaft) and Redis on this machine."""

from __future__ import annotations

import typer

from aigis.cli.common import not_ready

dev_app = typer.Typer(
    help="Run Kafka and Redis on this machine for development and tests.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    @dev_app.command(help="Start Kafka and Redis (idempotent).")
    def up() -> None:
        not_ready("dev up", "local infrastructure")

    @dev_app.command(help="Stop what `aigis dev up` started.")
    def down() -> None:
        not_ready("dev down", "local infrastructure")

    @dev_app.command(help="Show each service with its version and health.")
    def status() -> None:
        not_ready("dev status", "local infrastructure")

    app.add_typer(dev_app, name="dev")

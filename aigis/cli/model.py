"""``aigis model list | register | set-default | rollback``."""

from __future__ import annotations

import typer

from aigis.cli.common import not_ready

model_app = typer.Typer(
    help="List, register, promote and roll back model versions.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    @model_app.command("list", help="List model versions in service and in the registry.")
    def list_() -> None:
        not_ready("model list", "model versions")

    @model_app.command("register", help="Register a model archive as a new version.")
    def register_() -> None:
        not_ready("model register", "model versions")

    @model_app.command("set-default", help="Make a registered version the one in service.")
    def set_default() -> None:
        not_ready("model set-default", "model versions")

    @model_app.command("rollback", help="Restore the previous version in service.")
    def rollback() -> None:
        not_ready("model rollback", "model versions")

    app.add_typer(model_app, name="model")

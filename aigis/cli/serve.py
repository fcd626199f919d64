"""``aigis export``, ``aigis serve`` and ``aigis model``."""

from __future__ import annotations

import typer

from aigis.cli.common import not_ready

serve_app = typer.Typer(
    help="Start, stop and inspect TorchServe hosting the detector.", no_args_is_help=True
)
model_app = typer.Typer(
    help="List, register, promote and roll back model versions.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    @app.command(help="Package a trained model directory as a TorchServe archive (.mar).")
    def export() -> None:
        not_ready("export", "serving on TorchServe")

    @serve_app.command("start", help="Start TorchServe with a model store.")
    def start() -> None:
        not_ready("serve start", "serving on TorchServe")

    @serve_app.command("stop", help="Stop TorchServe.")
    def stop() -> None:
        not_ready("serve stop", "serving on TorchServe")

    @serve_app.command("status", help="Show TorchServe's health and models.")
    def status() -> None:
        not_ready("serve status", "serving on TorchServe")

    @model_app.command("list", help="List model versions in service and in the registry.")
    def list_() -> None:
        not_ready("model list", "serving on TorchServe")

    @model_app.command("register", help="Register a model archive as a new version.")
    def register_() -> None:
        not_ready("model register", "serving on TorchServe")

    @model_app.command("set-default", help="Make a registered version the one in service.")
    def set_default() -> None:
        not_ready("model set-default", "serving on TorchServe")

    @model_app.command("rollback", help="Restore the previous version in service.")
    def rollback() -> None:
        not_ready("model rollback", "serving on TorchServe")

    app.add_typer(serve_app, name="serve")
    app.add_typer(model_app, name="model")

"""``aigis export`` and ``aigis serve``."""

from __future__ import annotations

import typer

from aigis.cli.common import not_ready

serve_app = typer.Typer(
    help="Start, stop and inspect TorchServe hosting the detector.", no_args_is_help=True
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

    app.add_typer(serve_app, name="serve")

"""The ``aigis`` command line. Each command group lives in its own module.

Modules import heavy libraries (torch, transformers) inside the command functions, so that
``aigis worker`` and ``aigis --help`` stay fast and never load the model code.
"""

from __future__ import annotations

import typer

from aigis.cli import (
    bench,
    dashboard,
    demo,
    dev,
    evaluate,
    labels,
    model,
    review,
    serve,
    stream,
    thresholds,
    train,
)

app = typer.Typer(
    name="aigis",
    help=(
        "aigis screens a stream of images for AI generation and names the generator.\n\n"
        "Start with `aigis dev up` (Kafka and Redis on this machine), then `aigis demo`."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Help texts are plain prose: "[default: ...]" must not be read as console markup.
    rich_markup_mode=None,
)

for module in (
    dev,
    train,
    evaluate,
    thresholds,
    serve,
    model,
    stream,
    labels,
    review,
    demo,
    bench,
    dashboard,
):
    module.register(app)


def main() -> None:
    app()

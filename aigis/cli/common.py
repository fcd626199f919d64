"""Helpers shared by the command modules."""

from __future__ import annotations

from typing import NoReturn

import typer

from aigis.logs import configure_logging
from aigis.settings import Settings, load_settings


def settings() -> Settings:
    """Load settings and configure logging from them."""
    loaded = load_settings()
    configure_logging(loaded.log_level, loaded.log_format)
    return loaded


def not_ready(command: str, what: str) -> NoReturn:
    """Say that a command is not built yet and exit with status 2."""
    typer.echo(f"aigis {command}: not available yet ({what} is still being built).", err=True)
    raise typer.Exit(2)


def fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(code)

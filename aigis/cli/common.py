"""Helpers shared by the command modules."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from aigis.fetching import install_fetch_policy
from aigis.logs import configure_logging
from schemas.settings import Settings, load_settings


def settings() -> Settings:
    """Load settings and configure logging for a command from them; a bad setting exits 2 naming
    it. A command that runs a long-lived process configures logging again for it."""
    try:
        loaded = load_settings()
    except ValidationError as exc:
        problems = [
            # A rule over several settings (or the variables' names) has no location of its own.
            f"  AIGIS_{'__'.join(str(part).upper() for part in error['loc'])}: {error['msg']}"
            if error["loc"]
            else f"  {error['msg'].removeprefix('Value error, ')}"
            for error in exc.errors(include_url=False)
        ]
        fail("invalid settings in the environment:\n" + "\n".join(problems), code=2)
    configure_logging(loaded.log_level, loaded.log_format, command=True)
    install_fetch_policy(loaded.fetch)
    return loaded


def emit(data: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], None]) -> None:
    """Print ``data`` as JSON (``--json``) or as ``text`` writes it for a person."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        text(data)


def fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def table_console() -> Console:
    """A console for tables: the terminal's width in a terminal; elsewhere (a pipe, a log, CI)
    plain text wide enough that no cell is cut."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=10_000, color_system=None, highlight=False)

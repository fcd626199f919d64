"""Helpers shared by the command modules."""

from __future__ import annotations

from typing import NoReturn

import typer
from pydantic import ValidationError

from aigis.fetching import install_fetch_policy
from aigis.logs import configure_logging
from schemas.settings import Settings, load_settings


def settings() -> Settings:
    """Load settings and configure logging from them; a bad setting exits 2 naming it."""
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
    configure_logging(loaded.log_level, loaded.log_format)
    install_fetch_policy(loaded.fetch)
    return loaded


def fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(code)

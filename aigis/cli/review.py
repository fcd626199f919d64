"""``aigis review``: the terminal reviewer; ``aigis review serve``, the browser console; and
``aigis review user``, its logins."""

from __future__ import annotations

import getpass
import sys

import typer

from aigis.cli.common import fail, settings, table_console
from schemas.errors import AigisError


def register(app: typer.Typer) -> None:
    review = typer.Typer(
        help=(
            "Label uncertain images: in the terminal (no subcommand), or in the browser "
            "(`aigis review serve`, logins from `aigis review user add`)."
        ),
        invoke_without_command=True,
        rich_markup_mode=None,
    )
    users = typer.Typer(help="Logins of the review console.", no_args_is_help=True)
    review.add_typer(users, name="user")
    app.add_typer(review, name="review")

    @review.callback()
    def terminal(
        ctx: typer.Context,
        reviewer: str | None = typer.Option(
            None,
            "--reviewer",
            help="Your reviewer id, recorded with each decision (default: $USER).",
        ),
        group: str = typer.Option(
            "aigis-review", "--group", help="Consumer group; reviewers sharing it split the items."
        ),
        idle_exit: float | None = typer.Option(
            None, "--idle-exit", metavar="SECONDS", help="Exit once no item has come for this long."
        ),
        limit: int | None = typer.Option(
            None, "--limit", min=1, help="Exit after this many decisions."
        ),
    ) -> None:
        """Label uncertain images from the review topic in the terminal."""
        if ctx.invoked_subcommand is not None:
            return
        from aigis.review import open_reviewer

        loaded = settings()
        name = reviewer or getpass.getuser()
        try:
            with open_reviewer(
                loaded, group_id=group, reviewer=name, answers=sys.stdin, out=sys.stdout
            ) as session:
                session.run(idle_exit_s=idle_exit, limit=limit)
        except AigisError as err:
            fail(f"aigis review: {err}")
        except KeyboardInterrupt:
            typer.echo("\nstopped; the item on screen was not labelled and will be shown again.")

    @review.command(help="Serve the review console in the browser until SIGTERM or Ctrl+C.")
    def serve(
        host: str | None = typer.Option(None, "--host", help="Address to bind (review.host)."),
        port: int | None = typer.Option(
            None, "--port", min=1, max=65535, help="Port (review.port, 8300)."
        ),
    ) -> None:
        from aigis.console.server import serve as run_console

        loaded = settings()
        try:
            run_console(loaded, host or loaded.review.host, port or loaded.review.port)
        except AigisError as err:
            fail(f"aigis review serve: {err}")

    @users.command("add", help="Add a login, or set a new password and role for one.")
    def add(
        name: str = typer.Argument(..., help="The login; decisions are recorded under it."),
        role: str = typer.Option("reviewer", "--role", help="reviewer, or auditor (read-only)."),
        password_stdin: bool = typer.Option(
            False, "--password-stdin", help="Read the password from standard input's first line."
        ),
    ) -> None:
        from aigis.console import auth
        from aigis.console.db import open_database

        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"password for {name}: ")
            if getpass.getpass("again: ") != password:
                fail("the two passwords differ; nothing changed")
        try:
            engine = open_database(_database_url())
            created = auth.set_reviewer(engine, name, password, role)  # type: ignore[arg-type]
        except AigisError as err:
            fail(f"aigis review user add: {err}")
        typer.echo(f"{'added' if created else 'updated'} {name} ({role})")

    @users.command("disable", help="Refuse a login from now on and end its sessions.")
    def disable(name: str = typer.Argument(...)) -> None:
        from aigis.console import auth
        from aigis.console.db import open_database

        if not auth.disable_reviewer(open_database(_database_url()), name):
            fail(f"no login named {name!r}")
        typer.echo(f"disabled {name}")

    @users.command("list", help="Logins, roles and whether each is disabled.")
    def list_users() -> None:
        from rich.table import Table

        from aigis.console import auth
        from aigis.console.db import open_database

        table = Table("name", "role", "disabled")
        for name, role, disabled in auth.list_reviewers(open_database(_database_url())):
            table.add_row(name, role, "yes" if disabled else "no")
        table_console().print(table)


def _database_url() -> str:
    loaded = settings()
    return loaded.review.url_in(loaded.state_dir)

"""``aigis dev up | down | status``: Kafka (KRaft) and Redis on this machine."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from aigis import devstack
from aigis.cli.common import fail, settings, table_console
from aigis.devstack import Outcome, ServiceStatus
from schemas.errors import AigisError

dev_app = typer.Typer(
    help=(
        "Run Kafka and Redis on this machine for development and tests. Ports come from "
        "AIGIS_KAFKA__BOOTSTRAP_SERVERS and AIGIS_REDIS__URL (AIGIS_DEV__PORT_OFFSET moves "
        "every default port at once), files live in AIGIS_STATE_DIR."
    ),
    no_args_is_help=True,
)


def _say(outcome: Outcome) -> None:
    typer.echo(f"{outcome.name:<10} {outcome.address:<22} {outcome.result}")


def register(app: typer.Typer) -> None:
    @dev_app.command(help="Start Kafka and Redis and create the topics (idempotent).")
    def up() -> None:
        loaded = settings()
        typer.echo(f"state dir {loaded.state_dir}")
        try:
            devstack.up(loaded, report=_say)
        except AigisError as exc:
            fail(f"aigis dev up: {exc}")
        typer.echo("stop them with: aigis dev down")

    @dev_app.command(help="Stop what `aigis dev up` started with this state dir.")
    def down(
        purge: bool = typer.Option(
            False,
            "--purge",
            help="Also delete Kafka's and Redis' directories in the state dir (topics, data, "
            "logs).",
        ),
        purge_all: bool = typer.Option(
            False,
            "--all",
            help="--purge, and also delete the registry, the label store and TorchServe's files "
            "of the state dir (never anything outside it). TorchServe must be stopped first.",
        ),
    ) -> None:
        loaded = settings()
        if purge or purge_all:
            typer.echo(f"state dir {loaded.state_dir}")
        try:
            devstack.down(loaded, purge=purge, purge_all=purge_all, report=_say)
        except (AigisError, OSError) as exc:
            fail(f"aigis dev down: {exc}")

    @dev_app.command(
        help="Show each service with its version and health; exit 1 unless all are healthy."
    )
    def status(
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        loaded = settings()
        try:
            statuses = devstack.status(loaded)
        except AigisError as exc:
            fail(f"aigis dev status: {exc}")
        if as_json:
            typer.echo(json.dumps([_as_dict(s) for s in statuses], indent=2))
        else:
            typer.echo(f"state dir   {loaded.state_dir} (AIGIS_STATE_DIR)")
            typer.echo(f"port offset {loaded.dev.port_offset} (AIGIS_DEV__PORT_OFFSET)")
            _print_table(statuses, str(loaded.state_dir))
        if not all(s.healthy for s in statuses):
            raise typer.Exit(1)

    @dev_app.command(
        help=(
            "Create the topics of the settings on the configured brokers (any brokers, not only "
            "local ones); idempotent. For deployments whose broker runs elsewhere."
        )
    )
    def topics(
        wait_s: float = typer.Option(
            60.0, "--wait", min=0, help="Seconds to wait for the brokers to answer first."
        ),
    ) -> None:
        try:
            _say(devstack.create_topics(settings(), wait_s=wait_s))
        except AigisError as exc:
            fail(f"aigis dev topics: {exc}")

    app.add_typer(dev_app, name="dev")


def _as_dict(status: ServiceStatus) -> dict[str, object]:
    return {
        "name": status.name,
        "address": status.address,
        "state": status.state.value,
        "healthy": status.healthy,
        "pid": status.pid,
        "version": status.version,
        "detail": status.detail,
        "log": str(status.log) if status.log else None,
        "started_here": status.started_here,
    }


def _print_table(statuses: list[ServiceStatus], state_dir: str) -> None:
    table = Table(title=f"aigis dev ({state_dir})", title_justify="left")
    for column in ("service", "address", "state", "pid", "started here", "version", "health"):
        table.add_column(column, overflow="fold")
    for s in statuses:
        style = "green" if s.healthy else "red"
        table.add_row(
            s.name,
            s.address,
            f"[{style}]{s.state.value}[/{style}]",
            str(s.pid or "-"),
            "-" if s.started_here is None else ("yes" if s.started_here else "no"),
            s.version or "-",
            s.detail,
        )
    table_console().print(table)

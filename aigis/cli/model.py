"""``aigis model list | register | set-default | rollback | status``, and ``canary``
(:mod:`aigis.cli.canary`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from aigis.cli.common import emit, fail, settings, table_console
from schemas.errors import AigisError

if TYPE_CHECKING:
    from aigis.promote import ServiceControl
    from training.registry import Registry

model_app = typer.Typer(
    help=(
        "List, register, promote and roll back model versions. The registry "
        "(AIGIS_RETRAIN__REGISTRY_DIR) records each version's lineage and what was in service; "
        "TorchServe serves them."
    ),
    no_args_is_help=True,
)


@contextmanager
def _service(command: str, *, lock: bool = True) -> Iterator[tuple[Registry, ServiceControl]]:
    """The registry (locked for changes) and a ServiceControl; AigisError ends the command."""
    from aigis.promote import ServiceControl
    from serving.client.management import ManagementClient
    from training.registry import Registry

    loaded = settings()
    registry = Registry(loaded.registry_dir)
    try:
        with (
            registry.lock() if lock else _nothing(),
            ManagementClient(loaded.serving, key_file=loaded.serving_key_file) as client,
        ):
            yield registry, ServiceControl(loaded, registry, client)
    except AigisError as err:
        fail(f"aigis model {command}: {err}")


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def register(app: typer.Typer) -> None:
    @model_app.command("list", help="Registry lineage beside the versions TorchServe serves.")
    def list_(
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        with _service("list", lock=False) as (registry, control):
            rows = _rows(registry, control)
        if as_json:
            typer.echo(json.dumps(rows, indent=2, default=str))
            return
        _print(rows, registry)

    @model_app.command(
        "upgrade",
        help="Rewrite a checkpoint directory of an earlier format (config.json and weights) in "
        "the current one, which AutoModel.from_pretrained loads. The model card stays.",
    )
    def upgrade(
        checkpoint: Path = typer.Argument(..., help="A checkpoint directory."),
    ) -> None:
        from serving.errors import CheckpointError
        from serving.model.checkpoint import upgrade_checkpoint

        try:
            upgrade_checkpoint(checkpoint)
        except CheckpointError as err:
            fail(f"aigis model upgrade: {err}")
        typer.echo(f"upgraded {checkpoint}")

    @model_app.command("register", help="Add a model archive to the registry and TorchServe.")
    def register_(
        archive: Path = typer.Argument(..., exists=True, dir_okay=False, help="A .mar file."),
        set_default: bool = typer.Option(
            False, "--set-default", help="Also put it in service (cache namespace, then default)."
        ),
    ) -> None:
        from serving.client.manifest import read_manifest

        with _service("register") as (registry, control):
            info = read_manifest(archive)
            expected = settings().serving.model_name
            if info.name != expected:
                fail(
                    f"aigis model register: the archive is model {info.name!r} but the pipeline "
                    f"serves {expected!r} (AIGIS_SERVING__MODEL_NAME); export it with --name "
                    f"{expected}"
                )
            current = registry.in_service()
            record = registry.add_archive(archive, parent=current.version if current else None)
            served = control.default_version()
            if set_default:
                control.activate(record.version, action="set-default")
            elif current is None and served == record.version:
                # TorchServe already serves it (started with it): the registry adopts it.
                control.activate(record.version, action="register")
            else:
                control.load(record.version)
            in_service = registry.in_service()
        where = "in service" if in_service and in_service.version == record.version else "ready"
        typer.echo(f"registered {record.name} version {record.version} ({where})")

    @model_app.command("set-default", help="Put a registered version in service.")
    def set_default(
        version: str = typer.Argument(..., help="A version in `aigis model list`."),
    ) -> None:
        from training.registry import RegistryError, check_id

        try:
            check_id(version)
        except RegistryError as err:
            fail(f"aigis model set-default: {err}")
        with _service("set-default") as (_registry, control):
            event = control.activate(version, action="set-default")
        typer.echo(f"version {event.version} in service (was {event.previous})")

    @model_app.command(
        "status",
        help="The version in service, the canary, and drift per model version and source as "
        "the workers report it.",
    )
    def status(
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    ) -> None:
        from aigis.cli import model_status

        with _service("status", lock=False) as (registry, control):
            status = model_status.gather(settings(), registry, control)
        emit(status, as_json, model_status.show)

    @model_app.command("rollback", help="Restore the version in service before the current one.")
    def rollback() -> None:
        with _service("rollback") as (_registry, control):
            event = control.rollback()
        typer.echo(f"rolled back: version {event.version} in service (was {event.previous})")

    from aigis.cli import canary

    canary.add(model_app, _service)
    app.add_typer(model_app, name="model")


def _rows(registry: Registry, control: ServiceControl) -> list[dict[str, object]]:
    """One row per version known to the registry or to TorchServe, oldest first.

    When TorchServe cannot be reached the registry is listed alone, with a warning.
    """
    from serving.client.transport import ServingUnavailable

    try:
        served = set(control.served_versions())
        default = control.default_version()
    except ServingUnavailable as err:
        typer.secho(f"TorchServe is unreachable ({err}); listing the registry only", err=True)
        served, default = set(), None
    stack = registry.service_stack()
    rows: list[dict[str, object]] = []
    for record in registry.versions():
        gate = record.gate
        rows.append(
            {
                "version": record.version,
                "in_service": record.version == (stack[-1] if stack else None),
                "torchserve": "default"
                if record.version == default
                else ("registered" if record.version in served else "-"),
                "status": record.status,
                "parent": record.parent,
                "snapshot": record.data.snapshot_id if record.data else None,
                "metric": gate.metric if gate else None,
                "champion": gate.champion if gate else None,
                "candidate": gate.candidate if gate else None,
                "created_at": record.created_at.isoformat(timespec="seconds"),
            }
        )
    known = {row["version"] for row in rows}
    for version in sorted(served - known):
        rows.append(
            {
                "version": version,
                "in_service": False,
                "torchserve": "default" if version == default else "registered",
                "status": "not in registry",
            }
        )
    return rows


def _print(rows: list[dict[str, object]], registry: Registry) -> None:
    from rich.table import Table

    table = Table(title=f"model versions (registry {registry.root})")
    for column in ("version", "service", "TorchServe", "status", "parent", "snapshot", "gate"):
        table.add_column(column)
    for row in rows:
        gate = "-"
        if row.get("metric"):
            gate = f"{row['metric']} {_fmt(row['champion'])} -> {_fmt(row['candidate'])}"
        table.add_row(
            str(row["version"]),
            "IN SERVICE" if row["in_service"] else "",
            str(row["torchserve"]),
            str(row["status"]),
            str(row.get("parent") or "-"),
            str(row.get("snapshot") or "-"),
            gate,
        )
    table_console().print(table)
    if not rows:
        typer.echo("no versions yet: add the served model with `aigis model register ARCHIVE.mar`")
    target = registry.rollback_target()
    if target:
        typer.echo(f"`aigis model rollback` would restore version {target}")


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"

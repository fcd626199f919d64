"""``aigis model status``: what serves now, the canary, and drift per model version and source.

Drift is read from Redis, where every worker keeps its latest indices (:mod:`schemas.drift`):
one row per model version, source and statistic, with the largest index any worker reports
(each worker sees only its partitions' traffic), how many workers report it and how old that
largest index's report is, so the last alarm of a stopped worker shows its true age.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import redis
import typer

from aigis.cli.common import table_console

if TYPE_CHECKING:
    from aigis.promote import ServiceControl
    from schemas.settings import Settings
    from training.registry import Registry


def gather(settings: Settings, registry: Registry, control: ServiceControl) -> dict[str, Any]:
    """Everything ``aigis model status`` shows, as plain data."""
    from aigis.canary import CanaryControl
    from schemas.canary import CanaryError
    from schemas.drift import drift_key
    from serving.client.transport import ServingUnavailable

    in_service = registry.in_service()
    try:
        default: str | None = control.default_version()
    except ServingUnavailable as err:
        typer.secho(f"TorchServe is unreachable ({err})", err=True)
        default = None
    try:
        canary = CanaryControl(settings, control).state()
        raw = control.redis.hgetall(drift_key(settings.redis.key_prefix))
    except (CanaryError, redis.RedisError, OSError) as err:
        typer.secho(f"Redis cannot be read ({err}); no canary or drift shown", err=True)
        canary, raw = None, {}
    threshold = settings.worker.drift_psi_threshold
    return {
        "in_service": in_service.version if in_service else None,
        "torchserve_default": default,
        "canary": None
        if canary is None
        else {
            "version": canary.version,
            "percent": canary.percent,
            "compared_with": canary.default,
        },
        "drift_threshold": threshold,
        "drift": drift_rows(raw, time.time(), threshold),
    }


def drift_rows(raw: dict[bytes, bytes], now: float, threshold: float) -> list[dict[str, Any]]:
    """One row per model version, source and statistic of the drift hash's fields: the largest
    index, how many workers report it, and the age of the report that gave the largest."""
    from schemas.drift import DriftEntry

    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for field, value in raw.items():
        entry = DriftEntry.read(field, value)
        if entry is None:
            continue
        row = rows.setdefault(
            (entry.model_version, entry.source, entry.statistic),
            {"psi": entry.psi, "workers": 0, "age_s": now - entry.at},
        )
        if entry.psi > row["psi"]:
            row["psi"], row["age_s"] = entry.psi, now - entry.at
        row["workers"] += 1
    return [
        {
            "model_version": version,
            "source": source,
            "statistic": statistic,
            "psi": round(row["psi"], 4),
            "workers": row["workers"],
            "age_s": round(max(0.0, row["age_s"]), 1),
            "drifting": row["psi"] > threshold,
        }
        for (version, source, statistic), row in sorted(rows.items())
    ]


def show(status: dict[str, Any]) -> None:
    """``status`` (from :func:`gather`) for a person."""
    from rich.table import Table

    typer.echo(
        f"in service: {status['in_service'] or '-'} (TorchServe default: "
        f"{status['torchserve_default'] or 'unknown'})"
    )
    canary = status["canary"]
    if canary:
        typer.echo(
            f"canary: version {canary['version']} answers {canary['percent']:g}% of cache misses "
            "(`aigis model canary status`)"
        )
    if not status["drift"]:
        typer.echo("drift: no worker has reported yet (each needs two full windows of verdicts)")
        return
    table = Table(title=f"drift (PSI; alert above {status['drift_threshold']:g})")
    for column in ("version", "source", "statistic", "PSI", "workers", "age"):
        table.add_column(column)
    for row in status["drift"]:
        table.add_row(
            row["model_version"],
            row["source"],
            row["statistic"],
            f"{row['psi']:.4f}" + (" DRIFT" if row["drifting"] else ""),
            str(row["workers"]),
            f"{row['age_s']:.0f} s",
        )
    table_console().print(table)

"""``aigis dashboard``: the Grafana dashboard of deploy/observability drawn from a Prometheus."""

from __future__ import annotations

from pathlib import Path

import typer

from aigis.cli.common import fail


def register(app: typer.Typer) -> None:
    @app.command(
        help=(
            "Draw every panel of the Grafana dashboard (deploy/observability) from a "
            "Prometheus that scrapes aigis, into one PNG, with the dashboard's own queries. "
            "Needs matplotlib (the train extra)."
        )
    )
    def dashboard(
        prometheus: str = typer.Option(
            "http://127.0.0.1:9090", "--prometheus", help="The Prometheus to query."
        ),
        output: Path = typer.Option(Path("dashboard.png"), "--output", help="The PNG to write."),
        minutes: float = typer.Option(10.0, "--minutes", help="How far back to draw."),
        source: Path | None = typer.Option(
            None, "--dashboard", help="A dashboard JSON file (default: the repository's)."
        ),
    ) -> None:
        from aigis.dashboard import DASHBOARD, PrometheusQueryError, plot

        source = source or DASHBOARD
        if not source.is_file():
            fail(f"aigis dashboard: {source} does not exist; pass --dashboard FILE")
        try:
            counts = plot(prometheus, output, minutes=minutes, dashboard=source)
        except PrometheusQueryError as exc:
            fail(f"aigis dashboard: {exc}")
        empty = [title for title, n in counts.items() if n == 0]
        typer.echo(f"wrote {output}: {len(counts)} panels, {len(empty)} without data")
        for title in empty:
            typer.echo(f"  no data: {title}")

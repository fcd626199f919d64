"""The Grafana dashboard of deploy/observability plotted from a Prometheus, without Grafana.

Every panel's queries are evaluated as range queries and drawn one panel per subplot, so a
picture of the dashboard comes from the same PromQL that Grafana runs. Uses matplotlib's object
API (no pyplot) and imports it only when plotting: matplotlib comes with the ``train`` extra.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from schemas.errors import AigisError

DASHBOARD = (
    Path(__file__).resolve().parents[1] / "deploy/observability/grafana/dashboards/aigis.json"
)


class PrometheusQueryError(AigisError):
    """Prometheus refused or failed a query."""


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    targets: tuple[tuple[str, str], ...]
    """(PromQL, Grafana legend format) per query."""


@dataclass(frozen=True)
class Series:
    legend: str
    times: list[float]
    values: list[float]


def panels(dashboard: Path = DASHBOARD) -> list[Panel]:
    """The panels of a dashboard JSON file, in order."""
    data = json.loads(dashboard.read_text())
    return [
        Panel(
            p["title"],
            p.get("fieldConfig", {}).get("defaults", {}).get("unit", ""),
            tuple((t["expr"], t.get("legendFormat", "")) for t in p["targets"]),
        )
        for p in data["panels"]
    ]


def legend(fmt: str, labels: dict[str, str]) -> str:
    """Grafana's ``{{label}}`` substitution; the labels themselves when there is no format."""
    if not fmt:
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def query_range(
    prometheus: str, expr: str, *, start: float, end: float, step: float
) -> list[dict[str, Any]]:
    """The matrix Prometheus answers for ``expr`` between ``start`` and ``end`` (Unix times)."""
    try:
        response = httpx.get(
            f"{prometheus.rstrip('/')}/api/v1/query_range",
            params={"query": expr, "start": start, "end": end, "step": step},
            timeout=30,
        )
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise PrometheusQueryError(f"cannot query {prometheus}: {exc}") from exc
    if body.get("status") != "success":
        raise PrometheusQueryError(f"Prometheus refused {expr!r}: {body.get('error')}")
    return body["data"]["result"]  # type: ignore[no-any-return]


def panel_series(
    prometheus: str, panel: Panel, *, start: float, end: float, step: float
) -> list[Series]:
    out = []
    for expr, fmt in panel.targets:
        for item in query_range(prometheus, expr, start=start, end=end, step=step):
            points = [(float(t), float(v)) for t, v in item["values"]]
            out.append(
                Series(
                    legend(fmt, item["metric"]),
                    [t - start for t, _ in points],
                    [v for _, v in points],
                )
            )
    return out


def plot(
    prometheus: str,
    output: Path,
    *,
    minutes: float = 10.0,
    dashboard: Path = DASHBOARD,
    end: float | None = None,
) -> dict[str, int]:
    """Draw every panel of ``dashboard`` over the last ``minutes`` into one PNG at ``output``;
    returns the number of series each panel had (0: the panel would show no data)."""
    from matplotlib.figure import Figure

    end = time.time() if end is None else end
    start = end - minutes * 60
    step = max(1.0, minutes * 60 / 240)
    selected = panels(dashboard)
    columns = 3
    rows = math.ceil(len(selected) / columns)
    figure = Figure(figsize=(6 * columns, 3.2 * rows), layout="constrained")
    counts = {}
    for index, panel in enumerate(selected):
        axes = figure.add_subplot(rows, columns, index + 1)
        series = panel_series(prometheus, panel, start=start, end=end, step=step)
        counts[panel.title] = len(series)
        for s in series[:12]:
            axes.plot(s.times, s.values, label=s.legend[:40])
        axes.set_title(panel.title, fontsize=9)
        axes.set_xlabel("seconds", fontsize=7)
        axes.set_ylabel(panel.unit, fontsize=7)
        axes.tick_params(labelsize=7)
        if series:
            axes.legend(fontsize=6, loc="upper left")
        else:
            axes.text(0.5, 0.5, "no data", ha="center", transform=axes.transAxes)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=80)
    return counts

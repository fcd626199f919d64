"""The metrics of a real worker run, and deploy/observability against a real Prometheus.

One worker scores events on the package's TorchServe while a Prometheus (Debian's, installed by
deploy/prometheus/install.sh) scrapes it and TorchServe every second and evaluates the alert
rules. Then: the metric names and labels operators rely on are there, every query of every
dashboard panel returns data (and ``aigis dashboard`` draws it), and every rule evaluates
without error.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from aigis.dashboard import plot
from schemas import ImageEvent
from schemas.settings import Settings
from tests.streams import WorkerThread, drain, publish_events, publish_raw

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OBSERVABILITY = Path(__file__).resolve().parents[2] / "deploy" / "observability"
PROMETHEUS_PORT = 23491
WORKER_METRICS_PORT = 23492
_INSTALL_HINT = "install it with `bash deploy/prometheus/install.sh` (scripts/test.sh does)"


def _dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((OBSERVABILITY / "grafana" / "dashboards" / "aigis.json").read_text())
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


@pytest.fixture
def prometheus(worker_settings: Settings, tmp_path: Path) -> Iterator[str]:
    """A Prometheus scraping the worker's metrics port and TorchServe's, with the alert rules."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(f"prometheus is not installed: {_INSTALL_HINT}", pytrace=False)
    torchserve = urlsplit(worker_settings.serving.metrics_url).netloc
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(OBSERVABILITY / "alerts.yaml")],
        "scrape_configs": [
            {
                "job_name": "aigis-worker",
                "static_configs": [{"targets": [f"127.0.0.1:{WORKER_METRICS_PORT}"]}],
            },
            {"job_name": "torchserve", "static_configs": [{"targets": [torchserve]}]},
        ],
    }
    (tmp_path / "prometheus.yaml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{PROMETHEUS_PORT}"
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yaml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not _ready(url):
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "Prometheus did not become ready"
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _query(url: str, expr: str) -> list[Any]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert response["status"] == "success", (expr, response)
    return response["data"]["result"]  # type: ignore[no-any-return]


def _events(images: list[tuple[bytes, str | None]], prefix: str) -> list[ImageEvent]:
    """Events from three producers: one listed in metric_sources, one not, one without."""
    sources = ["tenant-a", "tenant-b", None]
    return [
        ImageEvent.inline(
            f"{prefix}-{i}",
            image,
            caption=caption,
            source=sources[i % 3],
            produced_at=datetime.now(UTC),
        )
        for i, (image, caption) in enumerate(images)
    ]


def test_a_worker_run_fills_every_dashboard_panel_and_the_rules_evaluate(
    worker_settings: Settings,
    smoke_images: list[tuple[bytes, str | None]],
    prometheus: str,
    tmp_path: Path,
) -> None:
    worker = worker_settings.worker.model_copy(
        update={
            "metrics_port": WORKER_METRICS_PORT,
            "metric_sources": frozenset({"tenant-a"}),
            "drift_window": 2,  # each (version, source) sees about six verdicts
        }
    )
    settings = worker_settings.model_copy(update={"worker": worker})
    first = _events(smoke_images[:12], "first")
    with WorkerThread(settings) as running:
        publish_events(settings, first)
        publish_raw(settings, [b"not an image event"])
        assert len(drain(settings, "verdicts", expect=12)) == 12
        # The same images again: answered from the verdict cache.
        publish_events(settings, _events(smoke_images[:6], "again"))
        assert len(drain(settings, "verdicts", expect=18)) == 18

        text = httpx.get(f"http://127.0.0.1:{WORKER_METRICS_PORT}/metrics", timeout=5).text
        for series in [
            'aigis_worker_verdicts_total{cached="false",decision=',
            'aigis_worker_p_ai_bucket{le="0.5",model_version="1",source="tenant-a"}',
            'aigis_worker_p_ai_count{model_version="1",source="other"}',
            'aigis_worker_p_ai_count{model_version="1",source="none"}',
            "aigis_worker_generators_total{generator=",
            'aigis_worker_dlq_total{reason="not_json"}',
            'aigis_worker_consumer_lag{partition="0",topic=',
            'aigis_worker_info{guarantee="exactly_once",model_version="1"} 1.0',
            "aigis_worker_loop_timestamp_seconds ",
            'aigis_worker_drift_psi{model_version="1",source="tenant-a",statistic="p_ai"}',
            "aigis_worker_drift_threshold 0.2",
            "aigis_worker_end_to_end_seconds_count 18.0",
        ]:
            assert series in text, series
        assert 'source="tenant-b"' not in text, "unlisted sources are counted as other"
        assert 'cached="true"' in text
        health = httpx.get(f"http://127.0.0.1:{WORKER_METRICS_PORT}/healthz", timeout=5)
        assert health.status_code == 200

        empty = _dashboard_queries()
        deadline = time.monotonic() + 90
        while empty:
            assert running.error is None
            empty = [(title, expr) for title, expr in empty if not _query(prometheus, expr)]
            if empty:
                assert time.monotonic() < deadline, f"panels without data: {empty}"
                time.sleep(1)

        # The same queries drawn without Grafana (`aigis dashboard`): every panel has a line.
        counts = plot(prometheus, tmp_path / "dashboard.png", minutes=2)
        assert all(counts.values()), counts
        assert (tmp_path / "dashboard.png").stat().st_size > 10_000

        rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        evaluated = [r for g in rules for r in g["rules"]]
        assert len(evaluated) == 11  # the recording rule and ten alerts
        for rule in evaluated:
            assert rule["health"] in ("ok", "unknown"), (rule["name"], rule.get("lastError"))
        deadline = time.monotonic() + 30
        while any(r["health"] == "unknown" for r in evaluated):
            assert time.monotonic() < deadline, "the rules were never evaluated"
            time.sleep(1)
            rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
            evaluated = [r for g in rules for r in g["rules"]]
        assert all(r["health"] == "ok" for r in evaluated), evaluated

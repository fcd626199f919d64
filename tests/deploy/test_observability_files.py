"""deploy/observability: the alert rules pass promtool's checks and unit tests, the Prometheus
config of compose is valid, the dashboard is one Grafana provisions, and Kubernetes gets the
same rules. That every panel's query returns data from a real worker is
tests/worker/test_observability.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
OBSERVABILITY = DEPLOY / "observability"


def promtool(*args: str, cwd: Path = OBSERVABILITY) -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail(
            "promtool is not installed: install it with `bash deploy/prometheus/install.sh` "
            "(scripts/test.sh does)",
            pytrace=False,
        )
    done = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_alert_rules_pass_promtool() -> None:
    assert "SUCCESS: 11 rules found" in promtool("check", "rules", "alerts.yaml")


def test_the_alert_rules_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts.test.yaml")


def test_every_alert_has_a_test_that_makes_it_fire() -> None:
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yaml").read_text())["groups"]
    alerts = {r["alert"] for g in rules for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((OBSERVABILITY / "alerts.test.yaml").read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert alerts == fired


def test_the_compose_prometheus_config_is_valid(tmp_path: Path) -> None:
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yaml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yaml"]
    config["rule_files"] = [str(OBSERVABILITY / "alerts.yaml")]  # where compose mounts it
    (tmp_path / "prometheus.yaml").write_text(yaml.safe_dump(config))
    promtool("check", "config", str(tmp_path / "prometheus.yaml"))
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./observability/alerts.yaml:/etc/prometheus/alerts.yaml:ro" in mounts


def test_the_dashboard_is_provisioned_and_every_panel_queries_prometheus() -> None:
    dashboard: dict[str, Any] = json.loads(
        (OBSERVABILITY / "grafana" / "dashboards" / "aigis.json").read_text()
    )
    assert dashboard["uid"] == "aigis-overview"
    [variable] = dashboard["templating"]["list"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
    provider = yaml.safe_load(
        (OBSERVABILITY / "grafana" / "provisioning" / "dashboards" / "aigis.yaml").read_text()
    )
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    path = provider["providers"][0]["options"]["path"]
    assert f"./observability/grafana/dashboards:{path}:ro" in mounts


def test_kubernetes_gets_the_same_rules() -> None:
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yaml").read_text())
    [rule] = [
        d
        for d in yaml.safe_load_all((DEPLOY / "k8s" / "base" / "monitoring.yaml").read_text())
        if d and d["kind"] == "PrometheusRule"
    ]
    assert rule["spec"]["groups"] == rules["groups"]

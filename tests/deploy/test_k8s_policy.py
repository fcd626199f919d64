"""Every Kubernetes overlay, rendered, passes the schemas and the policies a platform review asks.

Built-in kinds are checked against the Kubernetes schemas that ``kubernetes-validate`` bundles,
in strict mode (an unknown field is an error, not silently dropped); KEDA and
Prometheus-operator resources against the schemas committed in ``deploy/schemas/``, made strict
the same way. No network: nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.kustomize import render

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p.parent for p in DEPLOY.glob("k8s/overlays/*/kustomization.yaml"))
KUBERNETES_VERSION = "1.33.0"
"""The oldest Kubernetes release the manifests are written for."""
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda-v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication-keda-v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
}
WORKLOADS = ("Deployment", "StatefulSet")
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}
"""KEDA's name for each SASL mechanism of the Kafka clients."""
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@pytest.fixture(scope="module", params=OVERLAYS, ids=lambda p: p.name)
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(request.param)


def _of(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        spec = doc.get("spec", {})
        if doc["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if "template" in spec:
            yield f"{doc['kind']}/{doc['metadata']['name']}", spec["template"]["spec"]


def test_every_object_passes_its_schema(rendered: list[dict[str, Any]]) -> None:
    for doc in rendered:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        crd = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
        if crd is None:
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name}: {exc.message} at {list(exc.path)}")
            continue
        schema = json.loads((DEPLOY / "schemas" / crd).read_text())
        errors = list(jsonschema.Draft7Validator(schema).iter_errors(doc))
        assert not errors, f"{name}: {[(e.message, list(e.path)) for e in errors]}"


def test_a_field_no_schema_knows_is_caught() -> None:
    """Strictness is what catches a misspelt field, which the API server would drop silently."""
    [worker] = [d for d in render(OVERLAYS[0]) if d["kind"] == "StatefulSet"]
    worker["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES_VERSION, strict=True)
    [scaled] = [d for d in render(OVERLAYS[0]) if d["kind"] == "ScaledObject"]
    scaled["spec"]["maxReplicas"] = 3
    schema = json.loads(
        (DEPLOY / "schemas" / CRD_SCHEMAS["keda.sh/v1alpha1", "ScaledObject"]).read_text()
    )
    assert list(jsonschema.Draft7Validator(schema).iter_errors(scaled))


def test_pods_run_unprivileged_on_a_read_only_root(rendered: list[dict[str, Any]]) -> None:
    for where, pod in _pod_specs(rendered):
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] != 0, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod.get("automountServiceAccountToken") is False, where
        assert not pod.get("hostNetwork"), where
        assert not pod.get("hostPID"), where
        for c in pod["containers"]:
            ctx = c["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False, (where, c["name"])
            assert ctx["readOnlyRootFilesystem"] is True, (where, c["name"])
            assert ctx["capabilities"]["drop"] == ["ALL"], (where, c["name"])
            assert not ctx.get("capabilities", {}).get("add"), (where, c["name"])
            assert not ctx.get("privileged"), (where, c["name"])
            # A read-only root still needs somewhere to write temporary files.
            assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}, (where, c["name"])


def test_containers_have_pinned_images_and_limits(rendered: list[dict[str, Any]]) -> None:
    for where, pod in _pod_specs(rendered):
        for c in pod["containers"]:
            image = c["image"]
            assert "@sha256:" in image or image.rsplit(":", 1)[-1] == VERSION, (where, image)
            assert not image.endswith(":latest"), (where, image)
            limits, requests = c["resources"]["limits"], c["resources"]["requests"]
            assert {"cpu", "memory"} <= set(limits), (where, limits)
            assert {"cpu", "memory"} <= set(requests), (where, requests)


def test_services_have_probes_that_mean_something(rendered: list[dict[str, Any]]) -> None:
    for doc in rendered:
        if doc["kind"] not in WORKLOADS:
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            where = (doc["metadata"]["name"], c["name"])
            probes = {k: c.get(k) for k in ("startupProbe", "livenessProbe", "readinessProbe")}
            assert all(probes.values()), (where, probes)
            paths = {k: p["httpGet"]["path"] for k, p in probes.items()}
            # The metrics page answers while the loop is stuck: it proves nothing.
            assert not any(p.startswith("/metrics") for p in paths.values()), where
            if c["image"].split("/")[-1].startswith("aigis-worker"):
                assert all(p.startswith("/healthz?max_age_s=") for p in paths.values()), where
                # Readiness is stricter than liveness: out of rotation before being restarted.
                live = float(paths["livenessProbe"].split("=")[1])
                ready = float(paths["readinessProbe"].split("=")[1])
                assert ready <= live, where


def test_every_workload_has_a_disruption_budget(rendered: list[dict[str, Any]]) -> None:
    budgets = [b["spec"]["selector"]["matchLabels"] for b in _of(rendered, "PodDisruptionBudget")]
    for doc in rendered:
        if doc["kind"] in WORKLOADS:
            labels = doc["spec"]["template"]["metadata"]["labels"]
            covering = [b for b in budgets if b.items() <= labels.items()]
            assert len(covering) == 1, doc["metadata"]["name"]


def test_keda_authenticates_as_the_workers_do(rendered: list[dict[str, Any]]) -> None:
    [config] = _of(rendered, "ConfigMap")
    settings = config["data"]
    secrets = {s["metadata"]["name"]: s["stringData"] for s in _of(rendered, "Secret")}
    auths = {a["metadata"]["name"]: a["spec"] for a in _of(rendered, "TriggerAuthentication")}
    [scaled] = _of(rendered, "ScaledObject")
    assert scaled["spec"]["maxReplicaCount"] <= int(settings["AIGIS_KAFKA__PARTITIONS"])
    for trigger in scaled["spec"]["triggers"]:
        meta = trigger["metadata"]
        assert meta["bootstrapServers"] == settings["AIGIS_KAFKA__BOOTSTRAP_SERVERS"]
        assert meta["consumerGroup"] == settings.get("AIGIS_WORKER__GROUP_ID", "aigis-worker")
        params = {
            ref["parameter"]: secrets[ref["name"]][ref["key"]]
            for ref in auths[trigger["authenticationRef"]["name"]]["secretTargetRef"]
        }
        protocol = settings["AIGIS_KAFKA__SECURITY_PROTOCOL"]
        assert (params.get("tls") == "enable") == protocol.endswith("SSL")
        if protocol.startswith("SASL"):
            assert params["sasl"] == KEDA_SASL[settings["AIGIS_KAFKA__SASL_MECHANISM"]]
            assert params["username"] == settings["AIGIS_KAFKA__SASL_USERNAME"]
            assert params["password"] == secrets["aigis-secrets"]["AIGIS_KAFKA__SASL_PASSWORD"]


def test_every_workload_admits_only_what_a_network_policy_names(
    rendered: list[dict[str, Any]],
) -> None:
    policies = [p["spec"] for p in _of(rendered, "NetworkPolicy")]
    for doc in rendered:
        if doc["kind"] not in WORKLOADS:
            continue
        labels = doc["spec"]["template"]["metadata"]["labels"]
        covering = [
            p for p in policies if p["podSelector"]["matchLabels"].items() <= labels.items()
        ]
        assert covering, f"no NetworkPolicy selects {doc['metadata']['name']}"
        for policy in covering:
            assert "Ingress" in policy["policyTypes"]
            for rule in policy["ingress"]:
                assert rule.get("ports"), f"{doc['metadata']['name']}: a rule admits every port"


def test_torchserve_management_is_closed_to_all_but_named_clients(
    rendered: list[dict[str, Any]],
) -> None:
    [policy] = [p for p in _of(rendered, "NetworkPolicy") if p["metadata"]["name"] == "torchserve"]
    management = [
        rule["from"]
        for rule in policy["spec"]["ingress"]
        if {p["port"] for p in rule.get("ports", [])} & {8081, "management"}
    ]
    assert management, "a rule admits the management port"
    for sources in management:
        assert sources, "a rule without sources admits everyone"
        for source in sources:
            labels = source.get("podSelector", {}).get("matchLabels", {})
            assert labels, f"management admitted by a broad selector: {source}"
            assert "app.kubernetes.io/part-of" not in labels, "every aigis pod may not manage"
            # Workers learn the model on the inference port: they never reach the management API.
            assert labels.get("app.kubernetes.io/name") != "aigis-worker"
            expressions = source.get("podSelector", {}).get("matchExpressions", [])
            assert not any("aigis-worker" in e.get("values", []) for e in expressions)
    [retrain] = _of(rendered, "CronJob")
    labels = retrain["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert labels["aigis.io/torchserve-management"] == "true"


def test_every_metrics_port_is_scraped(rendered: list[dict[str, Any]]) -> None:
    monitors = _of(rendered, "ServiceMonitor")
    for service in _of(rendered, "Service"):
        ports = {p["name"] for p in service["spec"]["ports"]}
        if "metrics" not in ports:
            continue
        labels = service["metadata"]["labels"]
        scraping = [
            m
            for m in monitors
            if m["spec"]["selector"]["matchLabels"].items() <= labels.items()
            and {e["port"] for e in m["spec"]["endpoints"]} & ports
        ]
        assert scraping, f"no ServiceMonitor scrapes {service['metadata']['name']}"


def test_production_topics_survive_a_lost_broker() -> None:
    [prod] = [o for o in OVERLAYS if o.name == "prod"]
    [config] = [d for d in render(prod) if d["kind"] == "ConfigMap"]
    data = config["data"]
    replicas, insync = (
        int(data["AIGIS_KAFKA__REPLICATION_FACTOR"]),
        int(data["AIGIS_KAFKA__MIN_INSYNC_REPLICAS"]),
    )
    assert replicas >= 3
    assert 2 <= insync < replicas


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_the_renderer_agrees_with_kubectl_kustomize(overlay: Path) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True
    ).stdout
    theirs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}
    ours = {(d["kind"], d["metadata"]["name"]): d for d in render(overlay)}
    assert ours == theirs

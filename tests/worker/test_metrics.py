"""The worker's and the runtime's metrics as Prometheus scrapes them (no services)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from schemas.settings import WorkerSettings
from serving.client.http import ModelInfo
from worker.metrics import WorkerMetrics
from worker.processed import VerdictFacts
from worker.runtime.metrics import LoopHeartbeat, RuntimeMetrics, loop_age, serve_metrics
from worker.scorer import Scorer

pytestmark = pytest.mark.unit


def _registry() -> tuple[CollectorRegistry, WorkerMetrics, RuntimeMetrics]:
    registry = CollectorRegistry(auto_describe=True)
    return registry, WorkerMetrics(registry, "at_least_once"), RuntimeMetrics("worker", registry)


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_no_metric_exports_a_created_series() -> None:
    registry, worker, runtime = _registry()
    worker.events_in.labels("aigis.images").inc()
    worker.serving_seconds.observe(0.1)
    runtime.aborted_batches.inc()
    runtime.batch_committed(4, 0.2)
    text = generate_latest(registry).decode()
    assert "aigis_worker_events_in_total" in text
    assert "_created" not in text


def test_info_says_unknown_until_the_model_is_learnt_then_only_the_version_answering() -> None:
    registry, worker, _ = _registry()
    name = "aigis_worker_info"
    assert _value(registry, name, model_version="unknown", guarantee="at_least_once") == 1
    worker.model_served("3")
    worker.model_served("4")
    assert _value(registry, name, model_version="4", guarantee="at_least_once") == 1
    assert _value(registry, name, model_version="3", guarantee="at_least_once") is None
    assert _value(registry, name, model_version="unknown", guarantee="at_least_once") is None


def test_last_commit_timestamp_is_zero_until_a_batch_commits() -> None:
    registry, _, runtime = _registry()
    name = "aigis_worker_last_commit_timestamp_seconds"
    assert _value(registry, name) == 0
    runtime.batch_committed(8, 0.05)
    first = _value(registry, name)
    assert first is not None
    assert first > 1_700_000_000
    assert _value(registry, "aigis_worker_batch_size_count") == 1


class _Server:
    """Answers ``model_info`` with the versions given, one per call."""

    def __init__(self, versions: Sequence[str]) -> None:
        self._versions = list(versions)

    def model_info(self) -> ModelInfo:
        return ModelInfo("aigis", self._versions.pop(0), "fused", ("real",), True)


def test_the_scorer_reports_the_model_when_learnt_and_when_it_changes() -> None:
    seen: list[str] = []
    scorer = Scorer(
        _Server(["1", "1", "2"]),  # type: ignore[arg-type]
        WorkerSettings(model_refresh_s=1e-9),
        lambda info: seen.append(info.version),
    )
    for _ in range(3):
        scorer.model()
    assert seen == ["1", "2"]


def test_healthz_says_whether_the_loop_went_round_recently() -> None:
    registry, worker, _ = _registry()
    server = serve_metrics(registry, "127.0.0.1", 23411)
    assert server is not None
    try:
        url = "http://127.0.0.1:23411"
        fresh = httpx.get(f"{url}/healthz", timeout=5)
        assert fresh.status_code == 200
        assert fresh.json()["alive"] is True
        worker.loop._gauge.set(time.time() - 600)  # the loop stalled ten minutes ago
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 503
        assert httpx.get(f"{url}/healthz?max_age_s=900", timeout=5).status_code == 200
        assert httpx.get(f"{url}/healthz?max_age_s=soon", timeout=5).status_code == 400
        worker.loop.beat()
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        assert "aigis_worker_loop_timestamp_seconds" in httpx.get(f"{url}/metrics").text
    finally:
        server.shutdown()
        server.server_close()


def test_loop_age_is_none_until_a_stream_has_a_heartbeat() -> None:
    registry = CollectorRegistry(auto_describe=True)
    RuntimeMetrics("sink", registry)
    assert loop_age(registry) is None
    LoopHeartbeat("sink", registry)
    age = loop_age(registry)
    assert age is not None
    assert age < 5


def test_verdict_metrics_bound_the_source_label_to_the_listed_producers() -> None:
    registry = CollectorRegistry(auto_describe=True)
    worker = WorkerMetrics(registry, "exactly_once", sources={"tenant-a"})
    worker.verdicts_committed(
        [
            VerdictFacts("2", "human", "real", 0.1, "tenant-a", False),
            VerdictFacts("2", "ai_generated", "sdxl", 0.97, f"tenant-{'x' * 60}", True),
            VerdictFacts("2", "ai_generated", "unknown", 0.91, None, False),
        ]
    )
    counts = {
        labels["source"]: value
        for labels, value in (
            (s.labels, s.value)
            for m in registry.collect()
            if m.name == "aigis_worker_p_ai"
            for s in m.samples
            if s.name.endswith("_count")
        )
    }
    assert counts == {"tenant-a": 1, "other": 1, "none": 1}
    bucket = dict(model_version="2", source="other", le="0.95")
    assert _value(registry, "aigis_worker_p_ai_bucket", **bucket) == 0  # 0.97 is above it
    cached = dict(model_version="2", source="other", decision="ai_generated", cached="true")
    assert _value(registry, "aigis_worker_verdicts_total", **cached) == 1
    named = dict(model_version="2", source="none", generator="unknown")
    assert _value(registry, "aigis_worker_generators_total", **named) == 1


def test_generator_labels_are_the_served_classes_and_known_names_only() -> None:
    """A manifest or a reviewer can name anything; the series count only names the worker knows
    (the served label sets and the names evidence gives), the rest as ``other``."""
    registry = CollectorRegistry(auto_describe=True)
    worker = WorkerMetrics(registry, "exactly_once")
    names = ["sdxl", "flux", "attacker-0001", "flux/1-dev"]
    worker.verdicts_committed(
        [VerdictFacts("2", "ai_generated", n, 0.9, None, False) for n in names]
    )
    worker.model_served("3", ("real", "sdxl", "flux/1-dev"))
    worker.verdicts_committed([VerdictFacts("3", "ai_generated", "flux/1-dev", 0.9, None, False)])
    seen = {
        (s.labels["model_version"], s.labels["generator"]): s.value
        for m in registry.collect()
        if m.name == "aigis_worker_generators"
        for s in m.samples
        if s.name.endswith("_total")
    }
    assert seen == {
        ("2", "sdxl"): 1,
        ("2", "flux"): 1,
        ("2", "other"): 2,
        ("3", "flux/1-dev"): 1,
    }

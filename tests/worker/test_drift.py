"""The drift statistic against known distributions, and the windows it is computed on."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry

from worker.drift import DriftMonitor, p_ai_bin, psi

pytestmark = pytest.mark.unit


def test_identical_distributions_do_not_drift() -> None:
    assert psi({"a": 3, "b": 1}, {"a": 30, "b": 10}) == pytest.approx(0.0)


def test_psi_of_a_known_shift() -> None:
    # (0.7 - 0.5) ln(0.7 / 0.5) + (0.3 - 0.5) ln(0.3 / 0.5)
    expected = 0.2 * math.log(1.4) + 0.2 * math.log(0.5 / 0.3)
    assert psi({"a": 50, "b": 50}, {"a": 70, "b": 30}) == pytest.approx(expected)
    assert expected == pytest.approx(0.1695, abs=1e-4)


def test_psi_is_symmetric_and_grows_with_the_shift() -> None:
    uniform = {str(i): 10.0 for i in range(10)}
    slight = {**uniform, "9": 14.0, "0": 6.0}
    strong = {**uniform, "9": 40.0, "0": 1.0}
    assert 0 < psi(uniform, slight) < 0.1 < 0.25 < psi(uniform, strong)
    assert psi(uniform, strong) == pytest.approx(psi(strong, uniform))


def test_a_bin_empty_on_one_side_counts_with_a_floor_not_infinity() -> None:
    value = psi({"a": 10}, {"a": 9, "b": 1})
    assert math.isfinite(value)
    assert value > 0.25


def test_p_ai_bins_are_tenths_with_one_in_the_last() -> None:
    assert [p_ai_bin(x) for x in (0.0, 0.05, 0.1, 0.55, 0.999, 1.0)] == [
        "0",
        "0",
        "1",
        "5",
        "9",
        "9",
    ]


def _psi(registry: CollectorRegistry, version: str, source: str, statistic: str) -> float | None:
    return registry.get_sample_value(
        "aigis_worker_drift_psi",
        {"model_version": version, "source": source, "statistic": statistic},
    )


def test_the_monitor_compares_the_latest_window_with_the_first() -> None:
    registry = CollectorRegistry(auto_describe=True)
    drift = DriftMonitor(registry, window=4, threshold=0.2)
    assert registry.get_sample_value("aigis_worker_drift_threshold") == 0.2
    drift.observe([("1", "none", 0.05, "real")] * 6)
    assert _psi(registry, "1", "none", "p_ai") is None, "the current window is not full yet"
    drift.observe([("1", "none", 0.05, "real")] * 2)
    assert _psi(registry, "1", "none", "p_ai") == pytest.approx(0.0)
    # The traffic turns: AI images from one generator.
    drift.observe([("1", "none", 0.95, "sdxl")] * 4)
    assert _psi(registry, "1", "none", "p_ai") > 0.2  # type: ignore[operator]
    assert _psi(registry, "1", "none", "generator") > 0.2  # type: ignore[operator]
    # Another version or source has windows of its own.
    drift.observe([("2", "none", 0.95, "sdxl")] * 8)
    assert _psi(registry, "1", "none", "p_ai") > 0.2  # type: ignore[operator]
    assert _psi(registry, "2", "none", "p_ai") == pytest.approx(0.0)


def test_a_zero_window_turns_drift_off() -> None:
    registry = CollectorRegistry(auto_describe=True)
    DriftMonitor(registry, window=0, threshold=0.2).observe([("1", "none", 0.5, "real")] * 10)
    assert _psi(registry, "1", "none", "p_ai") is None

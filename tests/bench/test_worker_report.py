"""The worker benchmark's report shows each phase's cache hits and checks the scoring phases
had none."""

from __future__ import annotations

from typing import Any

import pytest

from bench.worker_report import report, scoring_check

pytestmark = pytest.mark.unit


def phase(events_per_s: float, hits: float, misses: float) -> dict[str, Any]:
    return {
        "events_per_s": events_per_s,
        "cpu_ms_per_event": {"worker": 2.0, "torchserve": 5.0, "kafka": 1.0},
        "serving_share_of_batch_time": 0.8,
        "mean_batch_size": 32.0,
        "cache_hits": hits,
        "cache_misses": misses,
    }


def results(scoring_hits: float) -> dict[str, Any]:
    return {
        "torchserve_items_per_s": 200.0,
        "torchserve_items_per_s_before_after": [190.0, 210.0],
        "worker_exactly_once": phase(170.0, scoring_hits, 600 - scoring_hits),
        "worker_exactly_once_json": phase(150.0, 0, 600),
        "worker_at_least_once": phase(175.0, 0, 600),
        "cache_hit_replay": phase(900.0, 600, 0),
        "naive_events_per_s": 12.0,
        "latency": {
            "rate_per_s": 85.0,
            "p50_ms": 300.0,
            "p99_ms": 600.0,
            "cache_hits": 0.0,
            "cache_misses": 1275.0,
        },
    }


def test_a_run_whose_scoring_phases_scored_every_event_passes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert scoring_check(results(0)) is None
    report(results(0))
    out = capsys.readouterr().out
    assert "worker_exactly_once           0 of 600" in out
    assert "cache_hit_replay            600 of 600" in out  # the replay's hits are its point
    assert "check passed: every scoring phase scored every event (0 cache hits)" in out


def test_cache_hits_in_a_scoring_phase_fail_the_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert scoring_check(results(262)) == (
        "cache hits in scoring phases (worker_exactly_once 262): their images repeat"
    )
    report(results(262))
    assert "CHECK FAILED: cache hits in scoring phases (worker_exactly_once 262)" in (
        capsys.readouterr().out
    )

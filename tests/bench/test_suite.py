"""The benchmark suite turns the benchmarks' JSON into a table and two plots."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.suite import machine, markdown, plots

pytestmark = pytest.mark.unit


def report() -> dict[str, object]:
    point = {"preset": "tiny", "pattern": "8 items, 4 in flight", "p50_ms": 136.0, "p99_ms": 159.0}
    return {
        "date": "2026-11-23T12:00:00+00:00",
        "machine": machine(),
        "model": {
            "rows": [
                {
                    "preset": "tiny",
                    "architecture": "fused",
                    "phase": "inference",
                    "precision": "fp32",
                    "batch": 32,
                    "items_per_s": 1844.0,
                }
            ]
        },
        "serving": {
            "serving": [
                {
                    **point,
                    "archive": "b8-d5",
                    "items_per_s": 35.9,
                    "mean_server_batch": 3.3,
                    "requests": 10,
                },
                {
                    **point,
                    "archive": "b16-d20",
                    "items_per_s": 233.1,
                    "mean_server_batch": 4.0,
                    "requests": 10,
                },
            ],
            "precision": [
                {
                    "preset": "tiny",
                    "precision": "int8",
                    "items_per_s": 55.4,
                    "agreement": 1.0,
                    "max_delta_p": 0.05,
                    "f1_task_a": 0.99,
                }
            ],
        },
        "worker": {
            "torchserve_items_per_s": 20.0,
            "worker_exactly_once": {"events_per_s": 18.0},
            "worker_at_least_once": {"events_per_s": 15.7},
            "cache_hit_replay": {"events_per_s": 390.0},
            "naive_events_per_s": 1.8,
            "latency": {
                "rate_per_s": 9.0,
                "p50_ms": 2100.0,
                "p99_ms": 3600.0,
                "latencies_ms": [1500.0, 2100.0, 2500.0, 3600.0],
            },
        },
    }


def test_markdown_has_every_section_and_the_ratios() -> None:
    text = markdown(report())
    for heading in ("## Model", "## TorchServe", "## Precision", "## Worker"):
        assert heading in text
    assert "90% of TorchServe" in text  # 18.0 / 20.0
    assert "worker is 10.0x" in text  # 18.0 / 1.8
    assert "| tiny | b16-d20 | 8 items, 4 in flight | 233.1 |" in text


def test_plots_are_written(tmp_path: Path) -> None:
    plots(report(), tmp_path / "day")
    for name in ("day-throughput.png", "day-latency.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")

"""The worker benchmark's report (:mod:`bench.worker`): its figures, and the check that the
phases meant to measure scoring scored every event."""

from __future__ import annotations

from typing import Any

__all__ = ["SCORING_PHASES", "report", "scoring_check"]

SCORING_PHASES = (
    "worker_exactly_once",
    "worker_exactly_once_json",
    "worker_at_least_once",
    "latency",
)
"""Phases whose figures are the worker scoring every event: a cache hit in one of them means its
images repeat, and its events/s is not a scoring rate."""


def scoring_check(r: dict[str, Any]) -> str | None:
    """What is wrong with the results ``r`` if a scoring phase had cache hits, else None
    (phases missing from ``r``, or without a hit count, are left out)."""
    found = [
        f"{phase} {r[phase]['cache_hits']:.0f}"
        for phase in SCORING_PHASES
        if r.get(phase, {}).get("cache_hits")
    ]
    if not found:
        return None
    return f"cache hits in scoring phases ({', '.join(found)}): their images repeat"


def report(r: dict[str, Any]) -> None:
    ts = r["torchserve_items_per_s"]
    eo = r["worker_exactly_once"]
    as_json = r["worker_exactly_once_json"]["events_per_s"]
    rows = [
        (
            "TorchServe alone (predict_many)",
            f"{ts:8.1f} items/s",
            "before/after: {:.1f} / {:.1f}".format(*r["torchserve_items_per_s_before_after"]),
        ),
        (
            "worker, exactly-once",
            f"{eo['events_per_s']:8.1f} events/s",
            f"{eo['events_per_s'] / ts:6.1%} of TorchServe",
        ),
        (
            "worker, exactly-once, JSON body",
            f"{as_json:8.1f} events/s",
            f"compact body is {eo['events_per_s'] / as_json:.2f}x",
        ),
        (
            "worker, at-least-once",
            f"{r['worker_at_least_once']['events_per_s']:8.1f} events/s",
            f"{r['worker_at_least_once']['events_per_s'] / ts:6.1%} of TorchServe",
        ),
        ("cache-hit replay", f"{r['cache_hit_replay']['events_per_s']:8.1f} events/s", ""),
        (
            "naive worker",
            f"{r['naive_events_per_s']:8.1f} events/s",
            f"worker is {eo['events_per_s'] / r['naive_events_per_s']:.1f}x",
        ),
        (
            f"latency at {r['latency']['rate_per_s']:.0f}/s",
            f"p50 {r['latency']['p50_ms']:.0f} ms",
            f"p99 {r['latency']['p99_ms']:.0f} ms",
        ),
    ]
    print()
    for name, value, note in rows:
        print(f"{name:<34} {value:<20} {note}")
    print("\nCPU ms per event (worker / TorchServe / Kafka broker):")
    for phase in (*SCORING_PHASES[:3], "cache_hit_replay"):
        cpu = r[phase]["cpu_ms_per_event"]
        share = r[phase]["serving_share_of_batch_time"]
        print(
            f"  {phase:<24} {cpu['worker']:6.2f} / {cpu['torchserve']:6.2f} / {cpu['kafka']:6.2f}"
            f"   waiting on TorchServe {share:.0%} of batch time,"
            f" mean batch {r[phase]['mean_batch_size']:.1f}"
        )
    print("\nCache hits (exact or near-duplicate), of the events each phase's worker read:")
    for phase in (*SCORING_PHASES, "cache_hit_replay"):
        hit, missed = r[phase]["cache_hits"], r[phase]["cache_misses"]
        print(f"  {phase:<24} {hit:6.0f} of {hit + missed:.0f}")
    problem = scoring_check(r)
    print(
        f"CHECK FAILED: {problem}"
        if problem
        else "check passed: every scoring phase scored every event (0 cache hits)"
    )

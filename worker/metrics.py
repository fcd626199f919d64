"""Prometheus metrics of the image stream, beside the runtime's own in the same registry.

Labels carry topics, outcomes and reasons only: never ids, pixels or captions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from worker.runtime.metrics import LATENCY_BUCKETS

if TYPE_CHECKING:
    from worker.pipeline import Processed


class WorkerMetrics:
    """The counters, histograms and gauges the worker updates."""

    def __init__(self, registry: CollectorRegistry, guarantee: str = "exactly_once") -> None:
        self.registry = r = registry
        self._guarantee = guarantee
        self.info = Gauge(
            "aigis_worker_info",
            "1, labelled with the model version answering (unknown until the worker has reached "
            "the model server) and the delivery guarantee",
            ["model_version", "guarantee"],
            registry=r,
        )
        self.model_served("unknown")
        self.events_in = Counter(
            "aigis_worker_events_in", "Events read from the images topic", ["topic"], registry=r
        )
        self.events_out = Counter(
            "aigis_worker_events_out",
            "Events finished, by outcome (a decision, or dlq)",
            ["outcome"],
            registry=r,
        )
        self.dlq = Counter(
            "aigis_worker_dlq",
            "Events sent to the dead-letter topic, by reason",
            ["reason"],
            registry=r,
        )
        self.cache_hits = Counter("aigis_worker_cache_hits", "Verdict cache hits", registry=r)
        self.cache_misses = Counter("aigis_worker_cache_misses", "Verdict cache misses", registry=r)
        self.cache_errors = Counter(
            "aigis_worker_cache_errors", "Batches scored uncached because Redis failed", registry=r
        )
        self.serving_seconds = Histogram(
            "aigis_worker_serving_seconds",
            "Time to score the cache misses of one batch on the model server",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end_seconds = Histogram(
            "aigis_worker_end_to_end_seconds",
            "Event produced_at to its verdict being committed",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.serving_unavailable = Counter(
            "aigis_worker_serving_unavailable",
            "Times the model server was unavailable and the partitions were paused",
            registry=r,
        )

        self.evidence = Counter(
            "aigis_worker_evidence",
            "Evidence signals on verdicts of cache misses, by kind and strength",
            ["kind", "strength"],
            registry=r,
        )
        self.evidence_generators = Counter(
            "aigis_worker_evidence_generators",
            "Generators named by evidence signals",
            ["generator"],
            registry=r,
        )
        self.evidence_ignored = Counter(
            "aigis_worker_evidence_ignored",
            "Evidence left unread, by reason (over a limit, malformed)",
            ["reason"],
            registry=r,
        )
        self.near_duplicates_reused = Counter(
            "aigis_worker_near_duplicates_reused",
            "Cache misses answered from a near-duplicate's verdict",
            registry=r,
        )
        self.evidence_seconds = Histogram(
            "aigis_worker_evidence_seconds",
            "Time of the evidence stage (near-duplicates and signals) for the misses of one batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def record_evidence(self, done: Processed) -> None:
        """The evidence counts of one committed batch."""
        for (kind, strength), n in done.evidence.items():
            self.evidence.labels(kind, strength).inc(n)
        for generator, n in done.generators.items():
            self.evidence_generators.labels(generator).inc(n)
        for reason, n in done.evidence_ignored.items():
            self.evidence_ignored.labels(reason).inc(n)
        self.near_duplicates_reused.inc(done.near_duplicates_reused)
        if done.cache_misses or done.near_duplicates_reused:
            self.evidence_seconds.observe(done.evidence_s)

    def model_served(self, version: str) -> None:
        """The model server answers with ``version`` now: the info series says so, alone."""
        self.info.clear()
        self.info.labels(version, self._guarantee).set(1)

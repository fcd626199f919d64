"""Prometheus metrics of the image stream, beside the runtime's own in the same registry.

Labels carry topics, outcomes, reasons, model versions, decisions, generator names and the
producer's ``source`` when it is one of ``worker.metric_sources``: never ids, pixels or captions,
and nothing a producer can make unbounded.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.labels import GENERATORS, OTHER_GENERATOR, UNKNOWN_GENERATOR
from worker.drift import DriftMonitor
from worker.evidence.names import KNOWN_NAMES
from worker.runtime.metrics import LATENCY_BUCKETS, LoopHeartbeat

if TYPE_CHECKING:
    from schemas.canary import CanaryState
    from worker.canary import Compared
    from worker.processed import Processed, VerdictFacts

P_AI_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 20))
"""Twenty equal bins of p_ai (the last is above 0.95): fine enough for drift statistics."""


class WorkerMetrics:
    """The counters, histograms and gauges the worker updates."""

    def __init__(
        self,
        registry: CollectorRegistry,
        guarantee: str = "exactly_once",
        sources: Iterable[str] = (),
        drift: DriftMonitor | None = None,
    ) -> None:
        self.registry = r = registry
        self._guarantee = guarantee
        self._sources = frozenset(sources)
        self._drift = drift
        self.info = Gauge(
            "aigis_worker_info",
            "1, labelled with the model version answering (unknown until the worker has reached "
            "the model server) and the delivery guarantee",
            ["model_version", "guarantee"],
            registry=r,
        )
        self._generator_labels: set[str] = {*GENERATORS, *KNOWN_NAMES, UNKNOWN_GENERATOR}
        self.model_served("unknown")
        self.loop = LoopHeartbeat("worker", r)
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
        self.serving_wait_seconds = Histogram(
            "aigis_worker_serving_wait_seconds",
            "Time one batch waited for the model server once its misses were examined",
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

        by_version = ["model_version", "source"]
        self.verdicts = Counter(
            "aigis_worker_verdicts",
            "Verdicts committed, by the model version that answered, decision and source, and "
            "whether the verdict cache answered",
            [*by_version, "decision", "cached"],
            registry=r,
        )
        self.p_ai = Histogram(
            "aigis_worker_p_ai",
            "p_ai of committed verdicts, by model version and source",
            by_version,
            buckets=P_AI_BUCKETS,
            registry=r,
        )
        self.generators = Counter(
            "aigis_worker_generators",
            "Generators named by committed verdicts (unknown when attribution abstained, real "
            "for human ones), by model version and source",
            [*by_version, "generator"],
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

        self.canary_percent = Gauge(
            "aigis_worker_canary_percent",
            "Share of cache misses (per cent) a canary's candidate version answers, as this "
            "worker follows it; no series while there is no canary",
            ["model_version"],
            registry=r,
        )
        self.canary_items = Counter(
            "aigis_worker_canary_compared",
            "Canary slice misses scored by both versions, by candidate version and whether "
            "their decisions agreed",
            ["model_version", "agreed"],
            registry=r,
        )

    def canary_served(self, state: CanaryState | None) -> None:
        """The canary changed: the percent gauge names its candidate alone, or nothing."""
        self.canary_percent.clear()
        if state is not None:
            self.canary_percent.labels(state.version).set(state.percent)

    def canary_compared(self, compared: Iterable[Compared]) -> None:
        for c in compared:
            self.canary_items.labels(c.version, str(c.agreed).lower()).inc()

    def verdicts_committed(
        self, verdicts: Iterable[VerdictFacts]
    ) -> dict[tuple[str, str, str], float]:
        """Count committed verdicts; return the drift indices they moved (see DriftMonitor)."""
        seen = []
        counts: Tally[tuple[str, str, str, str]] = Tally()
        generators: Tally[tuple[str, str, str]] = Tally()
        p_ai: dict[tuple[str, str], list[float]] = {}
        for v in verdicts:
            source = self.source_label(v.source)
            counts[v.model_version, source, v.decision, str(v.cached).lower()] += 1
            generators[v.model_version, source, self.generator_label(v.generator)] += 1
            p_ai.setdefault((v.model_version, source), []).append(v.p_ai)
            seen.append((v.model_version, source, v.p_ai, v.generator))
        # One label lookup per series and batch, not per verdict.
        for labels, n in counts.items():
            self.verdicts.labels(*labels).inc(n)
        for labels, n in generators.items():
            self.generators.labels(*labels).inc(n)
        for labels, values in p_ai.items():
            histogram = self.p_ai.labels(*labels)
            for value in values:
                histogram.observe(value)
        return self._drift.observe(seen) if self._drift is not None else {}

    def source_label(self, source: str | None) -> str:
        """``source`` when it is listed in ``worker.metric_sources``, else ``other`` (``none``
        for an event without one)."""
        if source is None:
            return "none"
        return source if source in self._sources else "other"

    def generator_label(self, name: str) -> str:
        """``name`` when it is a class of a served label set or a name evidence knows, else
        ``other``: names read from manifests or typed by reviewers must not grow the series."""
        return name if name in self._generator_labels else OTHER_GENERATOR

    def record_evidence(self, done: Processed) -> None:
        """The evidence counts of one committed batch."""
        for (kind, strength), n in done.evidence.items():
            self.evidence.labels(kind, strength).inc(n)
        for generator, n in done.generators.items():
            self.evidence_generators.labels(self.generator_label(generator)).inc(n)
        for reason, n in done.evidence_ignored.items():
            self.evidence_ignored.labels(reason).inc(n)
        self.near_duplicates_reused.inc(done.near_duplicates_reused)
        if done.cache_misses or done.near_duplicates_reused:
            self.evidence_seconds.observe(done.evidence_s)

    def model_served(self, version: str, generators: tuple[str, ...] = ()) -> None:
        """The model server answers with ``version`` now, naming ``generators``: the info series
        says so, alone."""
        self._generator_labels.update(generators)
        self.info.clear()
        self.info.labels(version, self._guarantee).set(1)

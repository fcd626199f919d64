"""Drift of the traffic or the model: the population stability index of the p_ai distribution
and of the generator mix, per model version and source, against a reference window.

Per (model version, source) the reference is the first ``worker.drift_window`` verdicts this
process committed, the current window the latest as many after those; once both are full, each
commit updates ``aigis_worker_drift_psi{model_version,source,statistic}`` (``p_ai`` or
``generator``) and ``aigis_worker_drift_threshold`` says ``worker.drift_psi_threshold`` for the
alert. PSI below 0.1 is usually read as stable, above 0.25 as a shift worth a look. Each worker
sees only its partitions' traffic, which Kafka spreads by event key; a restart starts a new
reference. The worker also keeps its latest indices in Redis (:mod:`schemas.drift`), where
``aigis model status`` reads every worker's.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Gauge

from schemas.drift import DriftEntry, drift_key
from worker.cache import VerdictCache

P_AI_BINS = 10
_FLOOR = 1e-4
"""Smallest share a bin counts with: an empty bin would make the index infinite."""


def psi(expected: Mapping[str, float], actual: Mapping[str, float]) -> float:
    """Population stability index of two distributions given as counts (or shares) per bin:
    sum over bins of (a - e) * ln(a / e), shares floored at 1e-4. 0 for identical ones."""
    bins = set(expected) | set(actual)
    e_total = sum(expected.values()) or 1.0
    a_total = sum(actual.values()) or 1.0
    index = 0.0
    for b in bins:
        e = max(expected.get(b, 0.0) / e_total, _FLOOR)
        a = max(actual.get(b, 0.0) / a_total, _FLOOR)
        index += (a - e) * math.log(a / e)
    return index


def p_ai_bin(p_ai: float) -> str:
    """The tenth of [0, 1] that ``p_ai`` falls in, as a bin name (1.0 in the last)."""
    return str(min(int(p_ai * P_AI_BINS), P_AI_BINS - 1))


@dataclass
class _Windows:
    size: int
    reference_p_ai: Counter[str] = field(default_factory=Counter)
    reference_generators: Counter[str] = field(default_factory=Counter)
    current: deque[tuple[str, str]] = field(default_factory=deque)

    def add(self, p_ai: float, generator: str) -> None:
        seen = (p_ai_bin(p_ai), generator)
        if sum(self.reference_p_ai.values()) < self.size:
            self.reference_p_ai[seen[0]] += 1
            self.reference_generators[seen[1]] += 1
            return
        self.current.append(seen)
        if len(self.current) > self.size:
            self.current.popleft()

    def ready(self) -> bool:
        return len(self.current) >= self.size

    def indices(self) -> dict[str, float]:
        current_p_ai = Counter(b for b, _ in self.current)
        current_generators = Counter(g for _, g in self.current)
        return {
            "p_ai": psi(self.reference_p_ai, current_p_ai),
            "generator": psi(self.reference_generators, current_generators),
        }


class DriftMonitor:
    """Keeps the windows of each (model version, source) and exports their indices."""

    def __init__(self, registry: CollectorRegistry, window: int, threshold: float) -> None:
        self._window = window
        self._windows: dict[tuple[str, str], _Windows] = {}
        self.psi = Gauge(
            "aigis_worker_drift_psi",
            "Population stability index of the latest verdicts against the first ones this "
            "process committed, per model version, source and statistic (p_ai or generator)",
            ["model_version", "source", "statistic"],
            registry=registry,
        )
        threshold_gauge = Gauge(
            "aigis_worker_drift_threshold",
            "worker.drift_psi_threshold: the index above which the drift alert fires",
            registry=registry,
        )
        threshold_gauge.set(threshold)

    def observe(
        self, verdicts: Iterable[tuple[str, str, float, str]]
    ) -> dict[tuple[str, str, str], float]:
        """Add ``(model_version, source, p_ai, generator)`` of committed verdicts and update
        the indices of the windows they touched; return those indices by (model version,
        source, statistic)."""
        updated: dict[tuple[str, str, str], float] = {}
        if self._window == 0:
            return updated
        touched = set()
        for version, source, p_ai, generator in verdicts:
            key = (version, source)
            self._windows.setdefault(key, _Windows(self._window)).add(p_ai, generator)
            touched.add(key)
        for key in touched:
            windows = self._windows[key]
            if windows.ready():
                for statistic, value in windows.indices().items():
                    self.psi.labels(*key, statistic).set(value)
                    updated[(*key, statistic)] = value
        return updated


class DriftBoard:
    """Writes this worker's latest drift indices to Redis (skipped while Redis fails)."""

    def __init__(self, cache: VerdictCache, key_prefix: str, worker: str, ttl_s: int) -> None:
        self._cache = cache
        self._key = drift_key(key_prefix)
        self._worker = worker
        self._ttl_s = ttl_s

    def publish(self, indices: Mapping[tuple[str, str, str], float]) -> None:
        if not indices:
            return
        now = time.time()

        def write() -> None:
            pipe = self._cache.client.pipeline(transaction=False)
            for (version, source, statistic), psi in indices.items():
                entry = DriftEntry(version, source, statistic, self._worker, psi, now)
                pipe.hset(self._key, entry.field(), entry.value())
            pipe.expire(self._key, self._ttl_s)  # with every worker stopped, the reports go
            pipe.execute()

        self._cache.guarded("keep the drift indices", write)

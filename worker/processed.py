"""What one batch of the worker produces: its outputs, and the counts the metrics keep of it
(recorded once the batch is committed)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from worker.canary import Compared
from worker.runtime.checkpoint import Output

DLQ = "dlq"
"""The outcome of an event that went to the dead-letter topic."""


@dataclass(frozen=True, slots=True)
class VerdictFacts:
    """What the metrics keep of one verdict: no ids, no content."""

    model_version: str
    decision: str
    generator: str
    p_ai: float
    source: str | None
    cached: bool


@dataclass
class Processed:
    """What one batch produces, and counts for metrics (recorded once it is committed)."""

    outputs: list[Output] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    """Per event: its decision, or ``dlq``."""
    dlq_reasons: Counter[str] = field(default_factory=Counter)
    cache_hits: int = 0
    cache_misses: int = 0
    cache_down: bool = False
    serving_s: float = 0.0
    """From the batch's first request to the model server to its last answer."""
    serving_wait_s: float = 0.0
    """How long the batch waited for those answers once its misses were examined."""
    evidence_s: float = 0.0
    evidence: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Signals found, by kind and strength."""
    generators: Counter[str] = field(default_factory=Counter)
    """Generators the evidence named."""
    evidence_ignored: Counter[str] = field(default_factory=Counter)
    near_duplicates_reused: int = 0
    produced_at: list[datetime] = field(default_factory=list)
    verdicts: list[VerdictFacts] = field(default_factory=list)
    canary: list[Compared] = field(default_factory=list)
    """How the canary's candidate compared with the default on the slice's misses."""

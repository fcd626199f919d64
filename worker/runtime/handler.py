"""What a stream says about itself: how it handles a batch (:class:`Handler`), where it reads
and how it batches and commits (:class:`StreamConfig`), and how it signals a dependency that is
down (:class:`DependencyDownError`)."""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.errors import AigisError
from schemas.fields import ConsumedRecord
from schemas.settings import Guarantee
from worker.runtime.batch import Batch
from worker.runtime.checkpoint import Output


class DependencyDownError(AigisError):
    """Raised by a handler: something the batch needs is down. The runtime pauses the
    partitions, waits with backoff (at least ``retry_after`` seconds) and hands the same batch
    (less any revoked partitions) to the handler again. Nothing is committed meanwhile.

    ``suspect_input``: the dependency answered but failed on this batch (a model server out of
    memory on one image, say). After ``failures_before_isolation`` attempts the batch is bisected
    and a record that alone still fails is dead-lettered with ``reason`` and ``reason_text``.
    """

    def __init__(
        self,
        detail: str,
        retry_after: float | None = None,
        *,
        suspect_input: bool = False,
        reason: str = "internal_error",
        reason_text: str = "the service failed on this record every time",
    ) -> None:
        self.retry_after = retry_after
        self.suspect_input = suspect_input
        self.reason = reason
        self.reason_text = reason_text
        super().__init__(detail)


class Handler:
    """What a stream does with its batches. Subclasses override ``handle`` and the hooks."""

    def handle(self, batch: Batch) -> Sequence[Output] | None:
        """The outputs of ``batch``, or None to give the batch back uncommitted (it is read
        again). May raise :class:`DependencyDownError`."""
        raise NotImplementedError

    def committed(self, batch: Batch, outputs: Sequence[Output], seconds: float) -> None:
        """Called once the batch and its outputs are committed."""

    def held(self, attempt: int, exc: DependencyDownError) -> None:
        """Called on each failed attempt while a batch is held."""

    def resumed(self) -> None:
        """Called when a held batch went through (not when it was given up)."""

    def idle(self) -> None:
        """Called after a poll that brought nothing."""

    def set_aside(self, record: ConsumedRecord, reason: str) -> None:
        """Called once a record whose handling kept failing was dead-lettered and committed."""


@dataclass(frozen=True)
class StreamConfig:
    """Where a stream reads and how it batches and commits."""

    name: str
    """Names the metrics (``aigis_<name>_...``) and log lines."""
    group_id: str
    topics: tuple[str, ...]
    max_records: int
    """A batch closes at this many records..."""
    batch_timeout_ms: int
    """...or this long after its first record, whichever comes first."""
    session_timeout_ms: int
    max_bytes: int | None = None
    """A batch also closes at this many bytes of record keys and values (its first record is
    always taken)."""
    failures_before_isolation: int = 3
    """Times a batch may fail on the same offsets before it is bisected to the records at
    fault."""
    guarantee: Guarantee = Guarantee.AT_LEAST_ONCE
    transactional_id: str | None = None
    """Exactly-once only: stable per process slot, so a restart fences its predecessor."""
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    """0: no endpoint."""
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 30.0
    consumer_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunStats:
    """Totals since the stream started."""

    batches: int = 0
    records: int = 0
    aborted_batches: int = 0


def where_raised(exc: BaseException) -> str:
    """``file:line in function`` of the innermost frame of ``exc``: enough for an operator to
    find the fault, without the exception's text, which may quote the input."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown"
    last = frames[-1]
    return f"{last.filename}:{last.lineno} in {last.name}"

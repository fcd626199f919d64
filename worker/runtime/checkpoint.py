"""The checkpoint: publishing a batch's outputs and committing its input offsets, under either
guarantee.

``exactly_once``: outputs and offsets go in one Kafka transaction; read_committed readers see a
batch's verdicts exactly when its offsets are committed, so a crash at any point means the batch is
re-read and its earlier attempt is invisible. ``at_least_once``: outputs are flushed with
``acks=all`` before the offsets are committed, so a crash between the two re-publishes the batch
(same keys; readers de-duplicate by ``event_id``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata, TopicPartition

from schemas import AigisError, trace
from schemas.codec import encode
from schemas.fields import ConsumedRecord
from schemas.messages import DeadLetter
from schemas.settings import Guarantee, Settings
from worker import kafka as kafka_clients
from worker.runtime import clients
from worker.runtime.clients import ProducerFenced, StreamHalted

log = structlog.get_logger(__name__)

Offsets = dict[TopicPartition, OffsetAndMetadata]


def _producer_options(settings: Settings) -> dict[str, Any]:
    """The checkpoint producer's batching (``kafka.stream_linger_ms``, ``stream_batch_bytes``):
    every commit flushes, so it may linger until then."""
    kafka = settings.kafka
    return {"linger_ms": kafka.stream_linger_ms, "batch_size": kafka.stream_batch_bytes}


@dataclass(frozen=True, slots=True)
class Output:
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


def traced(record: ConsumedRecord) -> tuple[tuple[str, bytes], ...]:
    """The headers of an output written for ``record``: a child of its trace
    (:mod:`schemas.trace`), or a new trace when it has none."""
    parent = trace.from_headers(getattr(record, "headers", None))
    return ((trace.HEADER, trace.child(parent).encode()),)


def dead_letter(
    record: ConsumedRecord,
    reason: str,
    detail: str,
    settings: Settings,
    event_id: str | None = None,
) -> Output:
    """The DLQ output of ``record``: its bytes, key and position untouched (for replay), and
    why it was rejected."""
    letter = DeadLetter.for_record(record, reason, detail, event_id)
    value = encode(letter, settings.message_version)
    return Output(settings.topics.dlq, record.key, value, traced(record))


class BatchCommitError(AigisError):
    """A batch's commit did not succeed: either it is known not to have happened (the
    transaction was aborted, an output was refused), or no answer came and its outcome is
    unknown (``outcome_unknown``).

    Either way the caller rewinds the consumer to the committed offsets, read stably (a read
    waits while a transaction on them is still open), and processes again whatever they do not
    cover. An unknown outcome is never assumed: the committed offsets say what happened.
    """

    def __init__(self, message: str, *, outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.outcome_unknown = outcome_unknown


class Checkpoint(Protocol):
    def commit(self, outputs: Sequence[Output], offsets: Offsets) -> None: ...
    def check(self) -> None:
        """Raise StreamHalted when the clients it commits through cannot serve any more (a
        background thread gone, a fenced producer). Cheap: the runtime calls it per poll."""

    def close(self) -> None: ...


class TransactionalCheckpoint:
    """Exactly-once: one transaction per batch with a producer of a stable transactional id."""

    def __init__(self, settings: Settings, consumer: KafkaConsumer, transactional_id: str) -> None:
        self._settings = settings
        self._consumer = consumer
        self._id = transactional_id
        self._producer: KafkaProducer | None = self._new_producer()

    def _new_producer(self) -> KafkaProducer:
        # init_transactions (inside worker.kafka.producer) fences any earlier producer with this id
        # and aborts whatever transaction it left open, e.g. after a kill -9.
        return kafka_clients.producer(
            self._settings, transactional_id=self._id, **_producer_options(self._settings)
        )

    def commit(self, outputs: Sequence[Output], offsets: Offsets) -> None:
        """Publish ``outputs`` and commit ``offsets`` atomically.

        Order: (1) begin a transaction; (2) send every output; (3) add the input offsets to the
        transaction with the consumer's group metadata (so a consumer fenced by a rebalance cannot
        commit); (4) commit the transaction, which flushes the sends first. On any failure the
        transaction is aborted (or, when the producer is broken or no answer came within its
        ``max_block_ms``, the producer is replaced, which aborts it broker-side) and
        BatchCommitError is raised: nothing of the batch is visible to read_committed readers and
        the caller re-reads it from the committed offsets. A fenced producer (another process took
        the transactional id) or a dead producer thread raises StreamHalted instead: a new producer
        would fence the other process in turn, so this one stops.
        """
        try:
            self._producer = self._producer or self._new_producer()
        except AigisError as exc:
            raise BatchCommitError(f"nothing committed: no transactional producer ({exc})") from exc
        producer = self._producer
        try:
            producer.begin_transaction()
            for out in outputs:
                producer.send(out.topic, value=out.value, key=out.key, headers=list(out.headers))
            clients.send_offsets(producer, offsets, self._consumer.group_metadata(), self._id)
            clients.commit(producer, self._id)
        except StreamHalted:
            raise
        except (KafkaError, AigisError) as exc:
            if clients.fenced(self._producer, exc):
                raise ProducerFenced(self._id) from exc
            # An unanswered request means a stuck producer: asking it to abort would wait again,
            # and whether the broker took a commit we asked for is unknown.
            unanswered = isinstance(exc, clients.TransactionTimeout)
            self._abort(exc, replace=unanswered)
            what = "outcome unknown" if unanswered else "transaction aborted"
            raise BatchCommitError(
                f"{what} ({type(exc).__name__}: {exc})", outcome_unknown=unanswered
            ) from exc

    def _abort(self, cause: Exception, *, replace: bool) -> None:
        """Abort the open transaction, or replace the producer when it cannot (a fresh producer's
        ``init_transactions`` aborts it broker-side). A fenced or dead one is kept for ``close``."""
        producer = self._producer
        if producer is None:
            return
        if not replace:
            try:
                clients.abort(producer, self._id)
                return
            except StreamHalted:
                raise
            except (KafkaError, AigisError) as exc:
                if clients.fenced(producer, exc):
                    raise ProducerFenced(self._id) from exc
                cause = exc
        log.warning("producer_replaced", transactional_id=self._id, error=repr(cause))
        self._producer = None
        producer.close(timeout=2)
        # The new producer's init_transactions settles the old transaction (completes a commit
        # the coordinator already took, aborts anything else), so the rewind that follows reads
        # settled offsets at once. When the broker cannot make one now, the next commit tries
        # again; meanwhile the rewind's stable read waits for the transaction to time out.
        try:
            self._producer = self._new_producer()
        except AigisError as exc:
            log.warning("producer_not_replaced_yet", transactional_id=self._id, error=str(exc))

    def check(self) -> None:
        clients.ensure_consumer_alive(self._consumer)
        if self._producer is not None:
            clients.ensure_producer_alive(self._producer, self._id)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None


class AtLeastOnceCheckpoint:
    """At-least-once: an idempotent producer with ``acks=all``; offsets committed after it."""

    def __init__(self, settings: Settings, consumer: KafkaConsumer) -> None:
        self._consumer = consumer
        self._producer = kafka_clients.producer(settings, **_producer_options(settings))
        self._timeout_s = 60.0

    def commit(self, outputs: Sequence[Output], offsets: Offsets) -> None:
        """Publish ``outputs``, then commit ``offsets``.

        Order: (1) send every output; (2) flush and wait for every acknowledgement (acks=all);
        (3) commit the input offsets synchronously. A failure in (1)-(2) commits nothing
        (BatchCommitError; the batch is re-read and its outputs sent again); a crash after (2) and
        before (3) re-publishes the batch on restart.
        """
        try:
            futures = [
                self._producer.send(o.topic, value=o.value, key=o.key, headers=list(o.headers))
                for o in outputs
            ]
            self._producer.flush(timeout=self._timeout_s)
            for future in futures:
                future.get(timeout=self._timeout_s)
        except KafkaError as exc:
            raise BatchCommitError(f"outputs not committed ({type(exc).__name__}: {exc})") from exc
        try:
            self._consumer.commit(offsets)
        except KafkaError as exc:
            # The outputs are out; whether the offsets landed is for the rewind to read.
            raise BatchCommitError(
                f"offsets not confirmed ({type(exc).__name__}: {exc})",
                outcome_unknown=isinstance(exc, KafkaTimeoutError),
            ) from exc

    def check(self) -> None:
        clients.ensure_consumer_alive(self._consumer)
        clients.ensure_producer_alive(self._producer)

    def close(self) -> None:
        self._producer.close(timeout=5)


def open_checkpoint(
    settings: Settings,
    consumer: KafkaConsumer,
    guarantee: Guarantee,
    transactional_id: str | None = None,
) -> Checkpoint:
    """The checkpoint for ``guarantee``; exactly-once needs a ``transactional_id``."""
    if guarantee is Guarantee.EXACTLY_ONCE:
        if transactional_id is None:
            raise ValueError("exactly-once needs a transactional id")
        return TransactionalCheckpoint(settings, consumer, transactional_id)
    return AtLeastOnceCheckpoint(settings, consumer)

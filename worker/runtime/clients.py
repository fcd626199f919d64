"""Whether the Kafka clients a stream commits through can still serve it, and transaction steps
with a deadline.

kafka-python (pinned in uv.lock) does each client's network I/O on a background thread: the
producer's ``Sender`` and the consumer's ``kafka-io`` event loop. Three of its failure modes would
leave a worker alive and in its group, holding partitions it can no longer commit:

- a background thread that is gone;
- a transactional request left unanswered (an error inside the producer's thread, a coordinator
  that never answers after a broker restart), while ``commit_transaction`` and its siblings wait
  for the answer without a time limit;
- a producer fenced by a newer one with its transactional id: fatal for it and, as long as the
  other one lives, for any producer this process would make in its place.

Here the first and the last stop the stream (:class:`StreamHalted`). The second becomes a
:class:`TransactionTimeout` after the producer's ``max_block_ms``, which is safe to give up on:
the checkpoint replaces the producer, and the new one's ``init_transactions`` aborts the open
transaction, or waits for a commit already under way to finish, before the batch is read again
from the committed offsets. This is the one module that reads kafka-python's internals
(``_sender``, ``_transaction_manager``, ``_net``); its unit tests check they are there.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import InvalidProducerEpochError, ProducerFencedError
from kafka.structs import OffsetAndMetadata, TopicPartition

from schemas.errors import AigisError

log = structlog.get_logger(__name__)

FENCING_ERRORS = (ProducerFencedError, InvalidProducerEpochError)
"""What the broker answers a producer whose transactional id a newer producer has taken."""
_POLL_S = 0.5
"""While a transactional request is outstanding, check the producer's thread this often."""


class StreamHalted(AigisError):  # noqa: N818 - names a state, like KafkaUnavailable
    """The stream cannot go on in this process: it must stop and leave its group (not retry)."""


class ProducerFenced(StreamHalted):
    """Another producer took this worker's transactional id."""

    def __init__(self, transactional_id: str) -> None:
        self.transactional_id = transactional_id
        super().__init__(
            f"the transactional id {transactional_id!r} is held by another process: a producer "
            "with the same id started after this one and fenced it. Two live workers share one "
            "id: give each host its own AIGIS_WORKER__INSTANCE_ID (and each process its own "
            "AIGIS_WORKER__SLOT where it is set). This worker stops rather than keep partitions "
            "it cannot commit."
        )


class ClientDied(StreamHalted):
    """A Kafka client's background I/O thread is gone."""


class TransactionTimeout(AigisError):  # noqa: N818 - like KafkaTimeoutError
    """A transactional request got no answer in time; the producer must be replaced."""


def ensure_consumer_alive(consumer: KafkaConsumer) -> None:
    """Raise ClientDied when the consumer's I/O loop has crashed or its thread is gone."""
    net = consumer._net
    thread: threading.Thread | None = net._io_thread
    crashed: BaseException | None = net._exception
    if crashed is not None or (thread is not None and not thread.is_alive()):
        raise ClientDied(_died("consumer", thread, crashed))


def close_consumer(consumer: KafkaConsumer) -> None:
    """Close the consumer, leaving its group, without committing anything. With its I/O thread
    gone nothing can reach the group (and ``close`` could wait for that thread for ever): the
    group then drops this member when its session times out."""
    try:
        ensure_consumer_alive(consumer)
    except ClientDied as exc:
        log.warning("consumer_not_closed", error=str(exc))
        return
    consumer.close(autocommit=False)


def ensure_producer_alive(producer: KafkaProducer, transactional_id: str | None = None) -> None:
    """Raise ProducerFenced when the producer was fenced, ClientDied when its thread is gone."""
    if transactional_id is not None and fenced(producer):
        raise ProducerFenced(transactional_id)
    sender: threading.Thread = producer._sender
    if not sender.is_alive():
        raise ClientDied(_died("producer", sender, None))


def fenced(producer: KafkaProducer | None, exc: BaseException | None = None) -> bool:
    """True when ``exc`` (or what caused it) or the producer's last fatal error is fencing."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, FENCING_ERRORS):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    if producer is None or producer._transaction_manager is None:
        return False
    manager = producer._transaction_manager
    return bool(manager.has_fatal_error()) and isinstance(manager.last_error, FENCING_ERRORS)


def send_offsets(
    producer: KafkaProducer,
    offsets: dict[TopicPartition, OffsetAndMetadata],
    group_metadata: Any,
    transactional_id: str,
) -> None:
    """``send_offsets_to_transaction``, waiting at most ``max_block_ms`` for the answer."""
    manager = producer._transaction_manager
    result = manager.send_offsets_to_transaction(offsets, group_metadata)
    _wait(producer, result, "add the batch's offsets to its transaction", transactional_id)


def commit(producer: KafkaProducer, transactional_id: str) -> None:
    """``commit_transaction`` (which flushes the sends first), with the same deadline."""
    result = producer._transaction_manager.begin_commit()
    _wait(producer, result, "commit the transaction", transactional_id)


def abort(producer: KafkaProducer, transactional_id: str) -> None:
    """``abort_transaction``, with the same deadline."""
    result = producer._transaction_manager.begin_abort()
    _wait(producer, result, "abort the transaction", transactional_id)


def _wait(producer: KafkaProducer, result: Any, what: str, transactional_id: str) -> None:
    """Wait for a transactional request's ``result`` (raising its error), checking meanwhile that
    the producer's thread lives and was not fenced."""
    timeout_s = producer.config["max_block_ms"] / 1000
    deadline = time.monotonic() + timeout_s
    producer._sender.wakeup()
    while not result.wait(timeout_ms=_POLL_S * 1000):
        ensure_producer_alive(producer, transactional_id)
        if time.monotonic() >= deadline:
            raise TransactionTimeout(
                f"Kafka did not answer within {timeout_s:g} s when asked to {what} "
                f"(transactional id {transactional_id!r}); the producer is replaced and the "
                "batch read again"
            )


def _died(role: str, thread: threading.Thread | None, crashed: BaseException | None) -> str:
    name = thread.name if thread is not None else "its I/O thread"
    cause = f" after {type(crashed).__name__}: {crashed}" if crashed is not None else ""
    return (
        f"the Kafka {role}'s background thread ({name}) is gone{cause}; this worker stops "
        "rather than keep partitions it cannot serve (a restart makes new clients and loses "
        "nothing)"
    )

"""A fenced producer or a dead client thread stops the stream; an unanswered transactional request
times out and replaces the producer.

kafka-python's real clients, pointed at a port where no broker listens (no broker needed: the
API version is given, so nothing bootstraps). Their transaction state is set by hand to the states
a broker would put them in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError, ProducerFencedError
from kafka.producer.transaction_manager import (
    ProducerIdAndEpoch,
    TransactionalRequestResult,
    TransactionState,
)
from kafka.structs import OffsetAndMetadata, TopicPartition

from schemas.settings import Settings
from worker import kafka as kafka_clients
from worker.kafka import KafkaUnavailable
from worker.runtime import clients
from worker.runtime.checkpoint import BatchCommitError, TransactionalCheckpoint
from worker.runtime.clients import ClientDied, ProducerFenced, TransactionTimeout

pytestmark = pytest.mark.unit

_OFFLINE: dict[str, Any] = {"bootstrap_servers": ["127.0.0.1:9"], "api_version": (3, 0)}
_OFFSETS = {TopicPartition("images", 0): OffsetAndMetadata(10, "", -1)}


@pytest.fixture
def make_producer() -> Iterator[Callable[..., KafkaProducer]]:
    """``make_producer(state=READY)``: a transactional producer as ``init_transactions`` leaves
    it, with a 0.5 s ``max_block_ms``."""
    made: list[KafkaProducer] = []

    def make(state: TransactionState = TransactionState.READY) -> KafkaProducer:
        producer = KafkaProducer(transactional_id="g.host.0", max_block_ms=500, **_OFFLINE)
        manager = producer._transaction_manager
        manager.set_producer_id_and_epoch(ProducerIdAndEpoch(1, 0))
        manager._current_state = state
        made.append(producer)
        return producer

    yield make
    for producer in made:
        producer.close(timeout=1)


@pytest.fixture
def consumer() -> Iterator[KafkaConsumer]:
    client = KafkaConsumer(group_id="g", **_OFFLINE)
    yield client
    clients.close_consumer(client)


def fence(producer: KafkaProducer) -> None:
    """What the producer's thread does when the broker answers PRODUCER_FENCED."""
    producer._transaction_manager.transition_to_fatal_error(ProducerFencedError())


def test_the_internals_read_are_where_they_are_looked_for(
    make_producer: Callable[..., KafkaProducer], consumer: KafkaConsumer
) -> None:
    producer = make_producer()
    assert producer._sender.is_alive()
    assert producer.config["max_block_ms"] == 500
    assert consumer._net._io_thread.is_alive()
    assert consumer._net._exception is None
    clients.ensure_producer_alive(producer, "g.host.0")
    clients.ensure_consumer_alive(consumer)


def test_a_fenced_producer_names_its_id_and_the_other_process(
    make_producer: Callable[..., KafkaProducer],
) -> None:
    producer = make_producer()
    fence(producer)
    with pytest.raises(ProducerFenced, match=r"'g\.host\.0' is held by another process"):
        clients.ensure_producer_alive(producer, "g.host.0")
    with pytest.raises(KafkaError) as raised:
        producer.begin_transaction()
    assert clients.fenced(producer, raised.value)


def test_fencing_is_found_in_the_cause_of_an_error() -> None:
    wrapped = KafkaUnavailable("could not initialise transactions")
    wrapped.__cause__ = ProducerFencedError()
    assert clients.fenced(None, wrapped)
    assert not clients.fenced(None, KafkaUnavailable("broker down"))


def test_a_dead_producer_thread_is_reported(make_producer: Callable[..., KafkaProducer]) -> None:
    producer = make_producer()
    producer._sender.initiate_close()
    producer._sender.join(5)
    with pytest.raises(ClientDied, match="producer's background thread"):
        clients.ensure_producer_alive(producer)


def crash(consumer: KafkaConsumer) -> None:
    """The consumer's I/O loop fails with an error, as a bug inside it would make it."""

    def fail() -> None:
        raise RuntimeError("boom")

    net = consumer._net
    thread = net._io_thread
    net._poll_once = fail
    net.wakeup()
    thread.join(5)


def vanish(consumer: KafkaConsumer) -> None:
    """The consumer's I/O thread ends without an error and without ``close``."""
    net = consumer._net
    net._stop = True
    net.wakeup()
    net._io_thread.join(5)


@pytest.mark.parametrize("kill", [crash, vanish])
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the crash
def test_a_dead_consumer_thread_is_reported_and_close_does_not_wait_for_it(
    consumer: KafkaConsumer, kill: Callable[[KafkaConsumer], None]
) -> None:
    kill(consumer)
    with pytest.raises(ClientDied, match="consumer's background thread"):
        clients.ensure_consumer_alive(consumer)
    started = time.monotonic()
    clients.close_consumer(consumer)
    assert time.monotonic() - started < 1


def test_an_unanswered_transactional_request_times_out(
    make_producer: Callable[..., KafkaProducer],
) -> None:
    producer = make_producer()
    started = time.monotonic()
    with pytest.raises(TransactionTimeout, match="commit the transaction"):
        clients._wait(producer, TransactionalRequestResult(), "commit the transaction", "t")
    assert time.monotonic() - started < 3


def test_a_request_failing_as_fenced_raises_at_once(
    make_producer: Callable[..., KafkaProducer],
) -> None:
    producer = make_producer()
    result = TransactionalRequestResult()
    result.done(error=ProducerFencedError())
    with pytest.raises(ProducerFencedError):
        clients._wait(producer, result, "commit the transaction", "t")


@pytest.fixture
def checkpoint(
    make_producer: Callable[..., KafkaProducer],
    consumer: KafkaConsumer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[TransactionalCheckpoint]:
    """A transactional checkpoint whose producer ``init_transactions`` has just left READY (and
    so is each producer made to replace it)."""
    monkeypatch.setattr(kafka_clients, "producer", lambda *_args, **_kwargs: make_producer())
    made = TransactionalCheckpoint(Settings(), consumer, "g.host.0")
    yield made
    made.close()


def test_a_fenced_producer_stops_the_stream_instead_of_being_replaced(
    checkpoint: TransactionalCheckpoint,
) -> None:
    assert checkpoint._producer is not None
    fence(checkpoint._producer)
    with pytest.raises(ProducerFenced):
        checkpoint.check()
    with pytest.raises(ProducerFenced):
        checkpoint.commit([], _OFFSETS)


def test_a_stuck_transaction_is_given_up_and_the_producer_replaced(
    checkpoint: TransactionalCheckpoint,
) -> None:
    stuck = checkpoint._producer
    started = time.monotonic()
    # No broker answers: adding the offsets never completes.
    with pytest.raises(BatchCommitError, match="TransactionTimeout") as raised:
        checkpoint.commit([], _OFFSETS)
    # Whether the broker took it is unknown: the caller must read the committed offsets.
    assert raised.value.outcome_unknown
    # Not a second wait for an abort that would not be answered either.
    assert time.monotonic() - started < 3
    # Replaced at once: the new producer's init_transactions settles the old transaction.
    assert checkpoint._producer is not None
    assert checkpoint._producer is not stuck
    checkpoint.check()


def test_a_stuck_producer_that_cannot_be_replaced_yet_is_replaced_by_the_next_commit(
    checkpoint: TransactionalCheckpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(*_args: object, **_kwargs: object) -> KafkaProducer:
        raise KafkaUnavailable("no broker")

    monkeypatch.setattr(kafka_clients, "producer", unavailable)
    with pytest.raises(BatchCommitError, match="TransactionTimeout"):
        checkpoint.commit([], _OFFSETS)
    assert checkpoint._producer is None
    with pytest.raises(BatchCommitError, match="no transactional producer") as raised:
        checkpoint.commit([], _OFFSETS)
    assert not raised.value.outcome_unknown  # known: nothing began

"""A terminal reviewer for ``topics.review``: show an item, take a label, publish the decision.

One item at a time: the reviewer's answer is published as a ``ReviewDecision`` (key
``image_sha256``) and acknowledged before the item's offset is committed, so an item is never
lost and at worst shown again. Answers: ``h`` human, ``1``..``N`` the generator, ``s`` skip, ``q``
quit. Inline images are written to a private temporary directory (removed on exit) and shown by
path; images given by URI are shown by their URI. Reads its answers from any text stream, so it
can be driven by a pipe.
"""

from __future__ import annotations

import base64
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

import structlog
from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata, TopicPartition
from pydantic import TypeAdapter, ValidationError

from schemas.codec import decode, encode
from schemas.errors import AigisError, SchemaError
from schemas.labels import GENERATOR_DISPLAY, GENERATORS
from schemas.messages import Identifier, ReviewDecision, ReviewItem
from schemas.settings import Settings
from worker import kafka as kafka_clients
from worker.intake import dead_letter

log = structlog.get_logger(__name__)

_ACK_TIMEOUT_S: Final[float] = 30.0
_MAGIC: Final[tuple[tuple[bytes, str], ...]] = (
    (b"\x89PNG", ".png"),
    (b"\xff\xd8", ".jpg"),
    (b"GIF8", ".gif"),
    (b"BM", ".bmp"),
)


@dataclass(frozen=True)
class Answer:
    """What the reviewer said about one item."""

    action: str
    """``label``, ``skip`` or ``quit``."""
    label_a: int = 0
    label_b: int = 0


def parse_answer(text: str, generators: tuple[str, ...]) -> Answer | None:
    """The answer ``text`` means, or None when it means nothing (ask again)."""
    word = text.strip().lower()
    if word in {"h", "human", "real"}:
        return Answer("label", 0, 0)
    if word in {"s", "skip"}:
        return Answer("skip")
    if word in {"q", "quit", "exit"}:
        return Answer("quit")
    if word.isdigit() and 1 <= int(word) < len(generators):
        return Answer("label", 1, int(word))
    return None


def generators_of(item: ReviewItem) -> tuple[str, ...]:
    """The generator list the item's model used (its probabilities' order), else the CT2 list."""
    names = tuple(item.verdict.generator_probs)
    return names if names and names[0] == GENERATORS[0] else GENERATORS


def image_suffix(data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return next((suffix for magic, suffix in _MAGIC if data.startswith(magic)), ".img")


@dataclass
class ReviewStats:
    labelled: int = 0
    skipped: int = 0
    rejected: int = 0


class Reviewer:
    """Shows review items from ``consumer`` on ``out`` and reads answers from ``answers``."""

    def __init__(
        self,
        settings: Settings,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        *,
        reviewer: str,
        answers: TextIO,
        out: TextIO,
        image_dir: Path,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._producer = producer
        self._reviewer = reviewer
        self._answers = answers
        self._out = out
        self._image_dir = image_dir
        self.stats = ReviewStats()
        try:
            TypeAdapter(Identifier).validate_python(reviewer)
        except ValidationError:
            raise AigisError(
                f"reviewer id {reviewer!r} is not valid: use letters, digits and . _ : @ / + = - "
                "(no spaces), for example --reviewer jane.doe"
            ) from None

    def run(self, *, idle_exit_s: float | None = None, limit: int | None = None) -> ReviewStats:
        """Review until quit, end of input, ``limit`` decisions, or ``idle_exit_s`` with no item."""
        waiting_since = time.monotonic()
        told_waiting = False
        while limit is None or self.stats.labelled < limit:
            polled = self._consumer.poll(timeout_ms=500, max_records=1)
            records = [r for batch in polled.values() for r in batch]
            if not records:
                idle = time.monotonic() - waiting_since
                if idle_exit_s is not None and idle >= idle_exit_s:
                    break
                if not told_waiting:
                    self._say("waiting for items to review (Ctrl+C to stop)...")
                    told_waiting = True
                continue
            if not self._review(records[0]):
                break
            waiting_since, told_waiting = time.monotonic(), False
        self._say(
            f"done: {self.stats.labelled} labelled, {self.stats.skipped} skipped, "
            f"{self.stats.rejected} unreadable"
        )
        return self.stats

    def _review(self, record: ConsumerRecord) -> bool:
        """Handle one record; False when the reviewer quits (its offset stays uncommitted)."""
        try:
            item = decode(ReviewItem, record.value or b"")
        except SchemaError as err:
            self._reject(record, err.reason, str(err))
            return True
        generators = generators_of(item)
        self._show(item, generators)
        answer = self._ask(generators)
        if answer.action == "quit":
            return False
        if answer.action == "skip":
            self.stats.skipped += 1
        else:
            try:
                decision = self._decision(item, answer, generators)
            except (AigisError, ValidationError) as err:
                self._reject(record, "unusable_review_item", str(err))
                return True
            key = decision.image_sha256.encode()
            topic = self._settings.topics.review_decisions
            self._producer.send(topic, value=encode(decision), key=key).get(_ACK_TIMEOUT_S)
            self.stats.labelled += 1
            log.info(
                "review_decision",
                event_id=item.verdict.event_id,
                image_sha256=decision.image_sha256,
                label_a=decision.label_a,
                label_b=decision.label_b,
            )
        self._commit(record)
        return True

    def _decision(
        self, item: ReviewItem, answer: Answer, generators: tuple[str, ...]
    ) -> ReviewDecision:
        if item.image_uri is None and item.image_b64 is None:
            raise AigisError(
                "the review item carries no image (neither URI nor inline bytes), so a decision "
                "could not be used for training; it was skipped"
            )
        return ReviewDecision(
            image_uri=item.image_uri,
            image_b64=None if item.image_uri else item.image_b64,
            image_sha256=item.verdict.image_sha256,
            label_a=answer.label_a,
            label_b=answer.label_b,
            generators=generators,
            caption=item.caption,
            reviewer=self._reviewer,
            event_id=item.verdict.event_id,
        )

    def _show(self, item: ReviewItem, generators: tuple[str, ...]) -> None:
        verdict = item.verdict
        probs = sorted(verdict.generator_probs.items(), key=lambda kv: kv[1], reverse=True)
        top = ", ".join(f"{name} {p:.2f}" for name, p in probs[:3]) or "none"
        self._say(
            f"\n-- event {verdict.event_id}  image {verdict.image_sha256[:16]}\n"
            f"   image:    {self._image_location(item)}\n"
            f"   caption:  {item.caption if item.caption is not None else '(none)'}\n"
            f"   verdict:  {verdict.decision.value}  p_ai={verdict.p_ai:.3f}  "
            f"generator={verdict.generator}  ({top})\n"
            f"   model:    {verdict.model_name} v{verdict.model_version}"
        )
        choices = "  ".join(
            f"[{i}] {GENERATOR_DISPLAY.get(name, name)}"
            for i, name in enumerate(generators)
            if i > 0
        )
        self._say(f"   [h] human   {choices}   [s] skip   [q] quit")

    def _image_location(self, item: ReviewItem) -> str:
        if item.image_uri is not None:
            return item.image_uri
        if item.image_b64 is None:
            return "(no image in the item)"
        data = base64.b64decode(item.image_b64)
        path = self._image_dir / f"{item.verdict.image_sha256}{image_suffix(data)}"
        if not path.exists():
            path.write_bytes(data)
            path.chmod(0o600)
        return str(path)

    def _ask(self, generators: tuple[str, ...]) -> Answer:
        while True:
            self._out.write("   label> ")
            self._out.flush()
            line = self._answers.readline()
            if not line:
                return Answer("quit")  # end of input
            answer = parse_answer(line, generators)
            if answer is not None:
                return answer
            self._say(f"   answer h, 1..{len(generators) - 1}, s or q")

    def _reject(self, record: ConsumerRecord, reason: str, detail: str) -> None:
        self._say(f"   unreadable item at offset {record.offset} ({detail}); sent to the DLQ")
        letter = dead_letter(record, reason, detail)
        self._producer.send(self._settings.topics.dlq, value=letter, key=record.key).get(
            _ACK_TIMEOUT_S
        )
        self.stats.rejected += 1
        self._commit(record)

    def _commit(self, record: ConsumerRecord) -> None:
        tp = TopicPartition(record.topic, record.partition)
        self._consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})

    def _say(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()


@contextmanager
def open_reviewer(
    settings: Settings, *, group_id: str, reviewer: str, answers: TextIO, out: TextIO
) -> Iterator[Reviewer]:
    """A Reviewer with its Kafka clients and image directory, all closed on exit."""
    with ExitStack() as stack:
        consumer = kafka_clients.consumer(
            settings,
            group_id=group_id,
            topics=[settings.topics.review],
            max_poll_records=1,
            # A person may look at one image for a long time before answering.
            max_poll_interval_ms=3_600_000,
        )
        stack.callback(consumer.close, autocommit=False)
        producer = kafka_clients.producer(settings)
        stack.callback(producer.close, timeout=10)
        image_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aigis-review-")))
        yield Reviewer(
            settings,
            consumer,
            producer,
            reviewer=reviewer,
            answers=answers,
            out=out,
            image_dir=image_dir,
        )

"""A terminal reviewer for ``topics.review``: show an item, take a label, publish the decision.

One item at a time, on the stream runtime: the reviewer's answer is published as a
``ReviewDecision`` (key ``image_sha256``) and acknowledged before the item's offset is committed,
so an item is never lost and at worst shown again. Answers: ``h`` human, ``1``..``N`` the
generator, or a generator's name (one outside the model's label set is labelled ``other`` with
the name kept), ``s`` skip (the item goes back to the end of the queue), ``q`` quit (the item on
screen stays uncommitted and is shown again next time). Inline images are written to a private
temporary directory (removed on exit) and shown by path; images given by URI are shown by their
URI. Reads its answers from any text stream, so it can be driven by a pipe.
"""

from __future__ import annotations

import base64
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

import structlog
from pydantic import TypeAdapter, ValidationError

from schemas.codec import decode, encode
from schemas.errors import AigisError, SchemaError
from schemas.fields import ConsumedRecord, Identifier
from schemas.labels import GENERATOR_DISPLAY, GENERATORS, normalise_generator, reviewer_label
from schemas.messages import ReviewDecision, ReviewItem, Verdict
from schemas.settings import Settings
from worker.runtime.app import StreamRuntime
from worker.runtime.batch import Batch
from worker.runtime.checkpoint import Output, dead_letter
from worker.runtime.handler import Handler, StreamConfig

log = structlog.get_logger(__name__)

_MAGIC: Final[tuple[tuple[bytes, str], ...]] = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"BM", "image/bmp"),
)
_SUFFIXES: Final[dict[str, str]] = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
    "image/webp": ".webp",
}


@dataclass(frozen=True)
class Answer:
    """What the reviewer said about one item."""

    action: str
    """``label``, ``skip`` or ``quit``."""
    label_a: int = 0
    label_b: int = 0
    generators: tuple[str, ...] = GENERATORS
    """The label set ``label_b`` indexes: the item's, plus ``other`` when a new name needed it."""
    generator_name: str | None = None
    """A generator named outside the label set (``label_b`` is then ``other``)."""


def parse_answer(text: str, generators: tuple[str, ...]) -> Answer | None:
    """The answer ``text`` means, or None when it means nothing (ask again)."""
    word = text.strip().lower()
    if word in {"h", "human", "real"}:
        return Answer("label", 0, 0, generators)
    if word in {"s", "skip"}:
        return Answer("skip")
    if word in {"q", "quit", "exit"}:
        return Answer("quit")
    if word.isdigit():
        return (
            Answer("label", 1, int(word), generators) if 1 <= int(word) < len(generators) else None
        )
    try:
        labels, label_b, kept = reviewer_label(normalise_generator(word), generators)
    except ValueError:
        return None
    return Answer("label", 1, label_b, labels, kept)


def generators_of(item: ReviewItem) -> tuple[str, ...]:
    """The generator list the item's model used (its probabilities' order), else the CT2 list."""
    names = tuple(item.verdict.generator_probs)
    return names if names and names[0] == GENERATORS[0] else GENERATORS


def media_type(data: bytes) -> str | None:
    """The type of an image format a browser or viewer shows, from its first bytes; None for
    anything else."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in _MAGIC if data.startswith(magic)), None)


def image_suffix(data: bytes) -> str:
    return _SUFFIXES.get(media_type(data) or "", ".img")


@dataclass
class ReviewStats:
    labelled: int = 0
    skipped: int = 0
    rejected: int = 0
    duplicates: int = 0
    """Items of an image already labelled in this session: committed without being shown."""


class Reviewer(Handler):
    """Shows review items on ``out`` and reads answers from ``answers``, one item per batch."""

    def __init__(
        self,
        settings: Settings,
        *,
        reviewer: str,
        answers: TextIO,
        out: TextIO,
        image_dir: Path,
        group_id: str = "aigis-review",
    ) -> None:
        self._settings = settings
        self._group_id = group_id
        self._reviewer = reviewer
        self._answers = answers
        self._out = out
        self._image_dir = image_dir
        self.stats = ReviewStats()
        self._outcome = ""
        self._told_waiting = False
        self._stop = threading.Event()
        self._limit: int | None = None
        self._labelled: dict[str, str] = {}
        """Image hash -> the answer given this session, so the same image is asked once."""
        self._runtime: StreamRuntime | None = None
        try:
            TypeAdapter(Identifier).validate_python(reviewer)
        except ValidationError:
            raise AigisError(
                f"reviewer id {reviewer!r} is not valid: use letters, digits and . _ : @ / + = - "
                "(no spaces), for example --reviewer jane.doe"
            ) from None

    def run(self, *, idle_exit_s: float | None = None, limit: int | None = None) -> ReviewStats:
        """Review until quit, end of input, ``limit`` decisions, or ``idle_exit_s`` with no item."""
        self._limit = limit
        config = StreamConfig(
            name="review",
            group_id=self._group_id,
            topics=(self._settings.topics.review,),
            max_records=1,
            batch_timeout_ms=1,
            session_timeout_ms=self._settings.store.session_timeout_ms,
            # A person may look at one image for a long time before answering.
            consumer_options={"max_poll_interval_ms": 3_600_000},
        )
        self._runtime = StreamRuntime(self._settings, config, self)
        self._runtime.run(self._stop, idle_exit_s=idle_exit_s)
        duplicates = f", {self.stats.duplicates} repeats" if self.stats.duplicates else ""
        self._say(
            f"done: {self.stats.labelled} labelled, {self.stats.skipped} skipped, "
            f"{self.stats.rejected} unreadable{duplicates}"
        )
        return self.stats

    def idle(self) -> None:
        if not self._told_waiting:
            self._say("waiting for items to review (Ctrl+C to stop)...")
            self._told_waiting = True

    def handle(self, batch: Batch) -> Sequence[Output] | None:
        """The decision (or, for a skip, the item again at the end of the queue, or a dead
        letter); None when the reviewer quits, which leaves the item uncommitted."""
        self._told_waiting = False
        (record,) = batch.records
        topics = self._settings.topics
        try:
            item = decode(ReviewItem, record.value or b"")
        except SchemaError as err:
            return [self._reject(record, err.reason, str(err))]
        earlier = self._labelled.get(item.verdict.image_sha256)
        if earlier is not None:
            self._say(
                f"\n-- event {item.verdict.event_id}: the same image as one labelled "
                f"{earlier} a moment ago; not asked again"
            )
            self._outcome = "duplicates"
            return []
        generators = generators_of(item)
        self._show(item, generators)
        answer = self._ask(generators)
        if answer.action == "quit":
            self._stop.set()
            return None
        if answer.action == "skip":
            self._outcome = "skipped"
            self._say("   skipped: it goes back to the end of the queue")
            return [Output(topics.review, record.key, record.value or b"")]
        try:
            decision = self._decision(item, answer)
        except (AigisError, ValidationError) as err:
            return [self._reject(record, "unusable_review_item", str(err))]
        self._outcome = "labelled"
        name = answer.generator_name or answer.generators[answer.label_b]
        label = "human" if answer.label_a == 0 else GENERATOR_DISPLAY.get(name, name)
        self._labelled[decision.image_sha256] = label
        self._say(f"   saved: {label}")
        log.info(
            "review_decision",
            event_id=item.verdict.event_id,
            image_sha256=decision.image_sha256,
            label_a=decision.label_a,
            label_b=decision.label_b,
            generator_name=decision.generator_name,
        )
        key = decision.image_sha256.encode()
        return [
            Output(topics.review_decisions, key, encode(decision, self._settings.message_version))
        ]

    def committed(self, batch: Batch, outputs: Sequence[Output], seconds: float) -> None:
        setattr(self.stats, self._outcome, getattr(self.stats, self._outcome) + 1)
        if self._limit is not None and self.stats.labelled >= self._limit:
            self._stop.set()

    def _decision(self, item: ReviewItem, answer: Answer) -> ReviewDecision:
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
            generators=answer.generators,
            generator_name=answer.generator_name,
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
            f"   model:    {verdict.model_name} v{verdict.model_version}\n"
            f"{evidence_lines(verdict)}"
            f"   queue:    {self._waiting()} more waiting"
        )
        choices = "  ".join(
            f"[{i}] {GENERATOR_DISPLAY.get(name, name)}"
            for i, name in enumerate(generators)
            if i > 0
        )
        self._say(f"   [h] human   {choices}   or a generator's name   [s] skip   [q] quit")

    def _waiting(self) -> int:
        return self._runtime.backlog() if self._runtime is not None else 0

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
            self._say(
                f"   answer h, 1..{len(generators) - 1}, a generator's name (letters, digits, "
                ". _ + -, family/model), s or q"
            )

    def _reject(self, record: ConsumedRecord, reason: str, detail: str) -> Output:
        self._say(f"   unreadable item at offset {record.offset} ({detail}); sent to the DLQ")
        self._outcome = "rejected"
        return dead_letter(record, reason, detail, self._settings)

    def _say(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()


@contextmanager
def open_reviewer(
    settings: Settings, *, group_id: str, reviewer: str, answers: TextIO, out: TextIO
) -> Iterator[Reviewer]:
    """A Reviewer in consumer group ``group_id`` with a private image directory, removed on
    exit (its Kafka clients live only while it runs)."""
    with ExitStack() as stack:
        image_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aigis-review-")))
        yield Reviewer(
            settings,
            reviewer=reviewer,
            answers=answers,
            out=out,
            image_dir=image_dir,
            group_id=group_id,
        )


def evidence_lines(verdict: Verdict) -> str:
    """What besides the model the verdict rests on: one line per signal, and the near-duplicate
    it was answered from; nothing for a verdict without either."""
    lines = [
        f"   evidence: {e.kind} ({e.strength}"
        f"{', ' + e.generator if e.generator else ''}): {e.value[:120]}\n"
        for e in verdict.evidence or []
    ]
    if verdict.near_duplicate_of is not None:
        near = verdict.near_duplicate_of
        lines.append(
            f"   copy of:  {near.image_sha256[:16]} (distance {near.distance}), verdict reused\n"
        )
    if lines and verdict.decided_by:
        lines.append(f"   decided:  by {verdict.decided_by}\n")
    return "".join(lines)

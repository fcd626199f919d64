"""The durable review queue: items in, leases out, decisions recorded with their outbox row,
override and audit line in one transaction.

A lease is a compare and set on the item's row (``leased_by``/``lease_until`` as read), so two
reviewers, in one process or in two console replicas on PostgreSQL, never hold the same item;
an expired lease makes the item free again. Nothing is kept in memory: a restart loses nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Engine, Row, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from aigis.console.db import decisions, items, outbox, overrides, stage_override, write_audit
from aigis.review import generators_of
from schemas.codec import decode, encode
from schemas.errors import AigisError
from schemas.labels import GENERATORS, UNKNOWN_GENERATOR, reviewer_label
from schemas.messages import ReviewDecision, ReviewItem
from schemas.overrides import HumanLabel
from schemas.settings import Settings

log = structlog.get_logger(__name__)


class NotLeased(AigisError):  # noqa: N818 - names a state, like KafkaUnavailable
    """The item is not (or no longer) leased to this reviewer: reload the page."""


@dataclass(frozen=True)
class Answer:
    """What a reviewer said: ``human``, ``ai`` (generator unknown) or a generator's name, in the
    item's label set or not (then it is published as ``other`` with the name kept)."""

    label: str

    def label_a(self) -> int:
        return 0 if self.label == "human" else 1

    def generator(self) -> str:
        if self.label == "human":
            return GENERATORS[0]
        return UNKNOWN_GENERATOR if self.label == "ai" else self.label


@dataclass(frozen=True)
class Filters:
    """What the queue view shows; every field optional."""

    source: str | None = None
    band: str | None = None
    generator: str | None = None
    min_age_s: float | None = None


class ReviewQueue:
    """The queue on one database. ``clock`` is injectable for lease-expiry tests."""

    def __init__(
        self, engine: Engine, settings: Settings, clock: Callable[[], float] = time.time
    ) -> None:
        self.engine = engine
        self._settings = settings
        self._clock = clock

    def add(self, item: ReviewItem) -> bool:
        """Enqueue ``item``; False when its event is already queued. An image a reviewer has
        already labelled is recorded as decided by that label, not asked again."""
        verdict = item.verdict
        with self.engine.begin() as conn:
            if conn.execute(select(items.c.id).where(items.c.event_id == verdict.event_id)).first():
                return False
            known = conn.execute(
                select(overrides.c.decision_id).where(
                    overrides.c.image_sha256 == verdict.image_sha256, overrides.c.active
                )
            ).first()
            now = self._clock()
            position = (conn.execute(select(func.max(items.c.position))).scalar() or 0) + 1
            conn.execute(
                insert(items).values(
                    event_id=verdict.event_id,
                    image_sha256=verdict.image_sha256,
                    source=verdict.source,
                    band="qa_sample" if item.qa_sample else "needs_review",
                    p_ai=verdict.p_ai,
                    generator=verdict.generator,
                    model_version=verdict.model_version,
                    item_json=item.model_dump_json(),
                    position=position,
                    state="decided" if known else "open",
                    enqueued_at=now,
                    decided_at=now if known else None,
                    decision_id=known.decision_id if known else None,
                    unsure=0,
                )
            )
        return True

    def lease(self, reviewer: str) -> Row[Any] | None:
        """The item this reviewer holds (its lease renewed), else the first free one, leased."""
        for _ in range(8):  # another reviewer may win the race for a candidate: take the next
            now = self._clock()
            until = now + self._settings.review.lease_s
            with self.engine.begin() as conn:
                held = conn.execute(
                    select(items.c.id).where(
                        items.c.state == "open",
                        items.c.leased_by == reviewer,
                        items.c.lease_until >= now,
                    )
                ).first()
                if held is not None:
                    conn.execute(
                        update(items).where(items.c.id == held.id).values(lease_until=until)
                    )
                    return self._row(conn, held.id)
                candidate = conn.execute(
                    select(items.c.id)
                    .where(items.c.state == "open", _free(now))
                    .order_by(items.c.position, items.c.id)
                    .limit(1)
                ).first()
                if candidate is None:
                    return None
                won = conn.execute(
                    update(items)
                    .where(items.c.id == candidate.id, items.c.state == "open", _free(now))
                    .values(leased_by=reviewer, lease_until=until)
                ).rowcount
                if won == 1:
                    return self._row(conn, candidate.id)
        return None

    def get(self, item_id: int) -> Row[Any] | None:
        with self.engine.connect() as conn:
            return self._row(conn, item_id)

    def decide(self, item_id: int, reviewer: str, answer: Answer) -> str:
        """Record ``answer`` for the item leased to ``reviewer``; returns the decision id.

        One transaction: the item (and every open item of the same image not leased to someone
        else) is closed, the decision, its outbox row and the override are written, and the
        audit log says who decided what against what the model said."""
        now = self._clock()
        decision_id = uuid.uuid4().hex
        with self.engine.begin() as conn:
            row = self._held(conn, item_id, reviewer, now)
            item = decode(ReviewItem, row.item_json.encode())
            generators = generators_of(item)
            if answer.label not in {"human", "ai"}:
                try:
                    answer = Answer(_named(answer.label, generators))
                except ValueError as err:
                    raise AigisError(f"{err}; pick a label of this item or type a name") from None
            conn.execute(
                update(items)
                .where(
                    items.c.image_sha256 == row.image_sha256,
                    items.c.state == "open",
                    or_(items.c.id == item_id, _free(now)),
                )
                .values(state="decided", decided_at=now, decision_id=decision_id, leased_by=None)
            )
            conn.execute(
                insert(decisions).values(
                    id=decision_id,
                    item_id=item_id,
                    image_sha256=row.image_sha256,
                    reviewer=reviewer,
                    label_a=answer.label_a(),
                    generator=answer.generator(),
                    model_p_ai=row.p_ai,
                    model_decision=item.verdict.decision.value,
                    decided_at=now,
                    revoked=False,
                )
            )
            label = HumanLabel(
                image_sha256=row.image_sha256,
                label_a=answer.label_a(),
                generator=answer.generator(),
                decision_id=decision_id,
                reviewer=reviewer,
            )
            stage_override(conn, label)
            # An empty payload publishes nothing but still switches the override on in time.
            conn.execute(
                insert(outbox).values(
                    decision_id=decision_id,
                    topic=self._settings.topics.review_decisions,
                    key=row.image_sha256,
                    payload=self._message(item, answer, generators, reviewer) or "",
                    publish_after=now + self._settings.review.publish_delay_s,
                )
            )
            write_audit(
                conn, now, reviewer, "decide", item_id, decision_id, item, answer=answer.label
            )
        log.info("review_decided", item_id=item_id, decision_id=decision_id, reviewer=reviewer)
        return decision_id

    def skip(self, item_id: int, reviewer: str, *, unsure: bool = False) -> None:
        """Give the item back: it goes to the end of the queue. ``unsure`` counts it as such."""
        now = self._clock()
        with self.engine.begin() as conn:
            row = self._held(conn, item_id, reviewer, now)
            position = (conn.execute(select(func.max(items.c.position))).scalar() or 0) + 1
            conn.execute(
                update(items)
                .where(items.c.id == item_id)
                .values(
                    leased_by=None,
                    lease_until=None,
                    position=position,
                    unsure=row.unsure + (1 if unsure else 0),
                )
            )
            item = decode(ReviewItem, row.item_json.encode())
            write_audit(conn, now, reviewer, "unsure" if unsure else "skip", item_id, None, item)

    def undo(self, reviewer: str) -> int | None:
        """Revoke this reviewer's latest decision and give its item back to them; the item id,
        or None when there is nothing to undo. A decision not yet published never will be; one
        already published stays on the topic, and the next decision supersedes it."""
        now = self._clock()
        with self.engine.begin() as conn:
            last = conn.execute(
                select(decisions)
                .where(decisions.c.reviewer == reviewer, decisions.c.revoked.is_(False))
                .order_by(decisions.c.decided_at.desc())
                .limit(1)
            ).first()
            if last is None:
                return None
            conn.execute(update(decisions).where(decisions.c.id == last.id).values(revoked=True))
            conn.execute(
                outbox.delete().where(
                    outbox.c.decision_id == last.id, outbox.c.published_at.is_(None)
                )
            )
            conn.execute(
                update(overrides)
                .where(overrides.c.decision_id == last.id)
                .values(active=False, synced=False)
            )
            conn.execute(
                update(items)
                .where(items.c.decision_id == last.id)
                .values(state="open", decided_at=None, decision_id=None, leased_by=None)
            )
            conn.execute(  # the item on screen goes back to the queue; the undone one is next
                update(items)
                .where(items.c.leased_by == reviewer, items.c.state == "open")
                .values(leased_by=None, lease_until=None)
            )
            conn.execute(
                update(items)
                .where(items.c.id == last.item_id)
                .values(leased_by=reviewer, lease_until=now + self._settings.review.lease_s)
            )
            row = self._row(conn, last.item_id)
            assert row is not None
            item = decode(ReviewItem, row.item_json.encode())
            write_audit(conn, now, reviewer, "undo", last.item_id, last.id, item)
        return int(last.item_id)

    def waiting(self, filters: Filters = Filters(), limit: int = 200) -> list[Row[Any]]:
        """Open items in queue order, filtered."""
        query = (
            select(*(c for c in items.c if c.name != "item_json"))  # not the image bytes
            .where(items.c.state == "open", *self._conditions(filters))
            .order_by(items.c.position, items.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query))

    def counts(self, filters: Filters = Filters()) -> dict[str, int]:
        """Open items by band, and ``decided``, under ``filters``."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(items.c.state, items.c.band, func.count())
                .where(*self._conditions(filters))
                .group_by(items.c.state, items.c.band)
            )
            out: dict[str, int] = {"needs_review": 0, "qa_sample": 0, "decided": 0}
            for state, band, n in rows:
                key = band if state == "open" else "decided"
                out[key] = out.get(key, 0) + int(n)
        return out

    def _conditions(self, f: Filters) -> list[Any]:
        conditions: list[Any] = []
        if f.source:
            conditions.append(items.c.source == f.source)
        if f.band:
            conditions.append(items.c.band == f.band)
        if f.generator:
            conditions.append(items.c.generator == f.generator)
        if f.min_age_s is not None:
            conditions.append(items.c.enqueued_at <= self._clock() - f.min_age_s)
        return conditions

    def _held(self, conn: Connection, item_id: int, reviewer: str, now: float) -> Row[Any]:
        row = self._row(conn, item_id)
        if (
            row is None
            or row.state != "open"
            or row.leased_by != reviewer
            or row.lease_until is None
            or row.lease_until < now
        ):
            raise NotLeased(
                "this item is not yours to answer (its lease expired or it was decided)"
            )
        return row

    @staticmethod
    def _row(conn: Connection, item_id: int) -> Row[Any] | None:
        return conn.execute(select(items).where(items.c.id == item_id)).first()

    def _message(
        self, item: ReviewItem, answer: Answer, generators: tuple[str, ...], reviewer: str
    ) -> str | None:
        """The decision as published, or None for "AI, generator unknown", which has no Task B
        label to publish (it is kept here, in the audit log and as an override)."""
        if answer.label == "ai" or (item.image_uri is None and item.image_b64 is None):
            return None
        labels, label_b, kept = (generators, 0, None)
        if answer.label_a():
            labels, label_b, kept = reviewer_label(answer.generator(), generators)
        decision = ReviewDecision(
            image_uri=item.image_uri,
            image_b64=None if item.image_uri else item.image_b64,
            image_sha256=item.verdict.image_sha256,
            label_a=answer.label_a(),
            label_b=label_b,
            generators=labels,
            generator_name=kept,
            caption=item.caption,
            reviewer=reviewer,
            event_id=item.verdict.event_id,
        )
        return encode(decision, self._settings.message_version).decode()


def _named(label: str, generators: tuple[str, ...]) -> str:
    """The generator a reviewer's label names: a class of ``generators`` as it is, anything else
    normalised (raises ValueError when it cannot be a generator name)."""
    labels, label_b, kept = reviewer_label(label, generators)
    return kept or labels[label_b]


def _free(now: float) -> Any:
    return or_(items.c.leased_by.is_(None), items.c.lease_until < now)

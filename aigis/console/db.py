"""The review console's database: one SQLAlchemy schema for SQLite (one console) and PostgreSQL
(several replicas sharing a queue).

Times are seconds since the epoch (floats), so both databases compare them the same way. Every
state change goes through a conditional UPDATE whose ``WHERE`` restates what the caller read
(compare and set), so two replicas never both win: no dialect-specific locking is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    update,
)
from sqlalchemy.engine import Connection, make_url

from schemas.errors import AigisError
from schemas.messages import ReviewItem
from schemas.overrides import HumanLabel

metadata = MetaData()

items = Table(
    "review_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(256), nullable=False, unique=True),
    Column("image_sha256", String(64), nullable=False, index=True),
    Column("source", String(256)),
    # ``needs_review`` or ``qa_sample``.
    Column("band", String(32), nullable=False),
    Column("p_ai", Float, nullable=False),
    Column("generator", String(64), nullable=False),
    Column("model_version", String(64), nullable=False),
    # The ReviewItem as received (inline image included).
    Column("item_json", Text, nullable=False),
    # Queue order; a skip moves the item to the end.
    Column("position", Integer, nullable=False),
    # ``open`` or ``decided``.
    Column("state", String(16), nullable=False, index=True),
    Column("leased_by", String(256)),
    Column("lease_until", Float),
    Column("enqueued_at", Float, nullable=False),
    Column("decided_at", Float),
    Column("decision_id", String(64)),
    # How many times a reviewer answered "unsure".
    Column("unsure", Integer, nullable=False, default=0),
)
Index("review_items_queue", items.c.state, items.c.position)

decisions = Table(
    "review_decisions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("item_id", Integer, nullable=False, index=True),
    Column("image_sha256", String(64), nullable=False),
    Column("reviewer", String(256), nullable=False, index=True),
    Column("label_a", Integer, nullable=False),
    Column("generator", String(64), nullable=False),
    Column("model_p_ai", Float, nullable=False),
    Column("model_decision", String(32), nullable=False),
    Column("decided_at", Float, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)

outbox = Table(
    "review_outbox",
    metadata,
    Column("decision_id", String(64), primary_key=True),
    Column("topic", String(256), nullable=False),
    Column("key", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("publish_after", Float, nullable=False),
    # A replica publishing the row holds it until then.
    Column("claimed_until", Float),
    Column("published_at", Float),
)

overrides = Table(
    "review_overrides",
    metadata,
    Column("image_sha256", String(64), primary_key=True),
    # A :class:`schemas.overrides.HumanLabel` as JSON.
    Column("label_json", Text, nullable=False),
    Column("decision_id", String(64), nullable=False),
    # False until its decision is published (and again once it is undone).
    Column("active", Boolean, nullable=False),
    # False while Redis may not match ``active`` (the outbox publisher copies it there).
    Column("synced", Boolean, nullable=False),
)

audit = Table(
    "review_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False, index=True),
    Column("reviewer", String(256), nullable=False),
    Column("action", String(32), nullable=False),
    Column("item_id", Integer),
    Column("decision_id", String(64)),
    # JSON: what the model said and what the reviewer answered.
    Column("detail", Text, nullable=False),
)

reviewers = Table(
    "review_reviewers",
    metadata,
    Column("name", String(256), primary_key=True),
    # ``reviewer`` or ``auditor`` (read-only).
    Column("role", String(16), nullable=False),
    Column("password_hash", String(512), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    # Wrong passwords in a row; at LOCK_AFTER the login is refused until ``locked_until``.
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", Float),
)

sessions = Table(
    "review_sessions",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("reviewer", String(256), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("expires_at", Float, nullable=False),
)


class DatabaseError(AigisError):
    """The console's database cannot be opened."""


def open_database(url: str) -> Engine:
    """An engine on ``url`` with the console's tables created (an SQLite file's directory too).
    Only SQLite and PostgreSQL are accepted."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    elif backend == "postgresql":
        engine = create_engine(url, pool_pre_ping=True)
    else:
        raise DatabaseError(
            f"review database {parsed.render_as_string(hide_password=True)!r} is neither SQLite "
            "nor PostgreSQL; set AIGIS_REVIEW__DATABASE_URL to postgresql+psycopg://... or unset it"
        )
    try:
        metadata.create_all(engine)
    except Exception as exc:
        raise DatabaseError(
            f"cannot open the review database {parsed.render_as_string(hide_password=True)} "
            f"({type(exc).__name__}); check AIGIS_REVIEW__DATABASE_URL"
        ) from exc
    return engine


def _sqlite_pragmas(connection: object, _record: object) -> None:
    # The driver's own transaction handling begins late and deferred, so two writers can each
    # hold a read snapshot and fail to upgrade; transactions are begun here instead.
    connection.isolation_level = None  # type: ignore[attr-defined]
    # WAL lets the pages read while the feed writes; durability: every commit reaches the disk.
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # IMMEDIATE takes the write lock at the start: one writer at a time, waiting its turn
    # (``timeout``) instead of failing half-way.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def stage_override(conn: Connection, label: HumanLabel) -> None:
    """Write a reviewer's label of an image as its override, inactive until published."""
    values = {"label_json": label.model_dump_json(), "decision_id": label.decision_id}
    # Inactive until published: the outbox publisher switches it on with the publish.
    done = conn.execute(
        update(overrides)
        .where(overrides.c.image_sha256 == label.image_sha256)
        .values(**values, active=False, synced=False)
    ).rowcount
    if done == 0:
        conn.execute(
            insert(overrides).values(
                image_sha256=label.image_sha256, **values, active=False, synced=False
            )
        )


def write_audit(
    conn: Connection,
    now: float,
    reviewer: str,
    action: str,
    item_id: int | None,
    decision_id: str | None,
    item: ReviewItem,
    **extra: str,
) -> None:
    """One line of the audit log: who did what to which item, and what the model had said."""
    verdict = item.verdict
    detail = {
        "event_id": verdict.event_id,
        "image_sha256": verdict.image_sha256,
        "model_p_ai": verdict.p_ai,
        "model_decision": verdict.decision.value,
        "model_generator": verdict.generator,
        "model_version": verdict.model_version,
        **extra,
    }
    conn.execute(
        insert(audit).values(
            at=now,
            reviewer=reviewer,
            action=action,
            item_id=item_id,
            decision_id=decision_id,
            detail=json.dumps(detail),
        )
    )

"""The review console's queue, on SQLite and on PostgreSQL: leases, expiry, skip, decisions with
their outbox, override and audit, undo, restart, and logins."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from aigis.console import auth
from aigis.console.db import audit, decisions, open_database, outbox, overrides
from aigis.console.quality import quality_report, wilson
from aigis.console.queue import Answer, Filters, NotLeased, ReviewQueue
from schemas.codec import decode
from schemas.errors import AigisError
from schemas.labels import GENERATORS, Decision
from schemas.messages import ReviewDecision
from schemas.overrides import HumanLabel
from schemas.settings import Settings
from tests.aigis.console_support import png, postgres_server, review_item

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'console.db'}"
    url: str = request.getfixturevalue("postgres_url")
    engine = open_database(url)
    from aigis.console.db import metadata

    metadata.drop_all(engine)  # a fresh schema per test
    metadata.create_all(engine)
    engine.dispose()
    return url


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(database_url: str, clock: Clock) -> Iterator[ReviewQueue]:
    engine = open_database(database_url)
    yield ReviewQueue(engine, _settings(), clock)
    engine.dispose()


def _settings() -> Settings:
    review = Settings().review.model_copy(update={"lease_s": 60.0, "publish_delay_s": 10.0})
    return Settings().model_copy(update={"review": review})


def _rows(engine: Engine, table: object) -> list[object]:
    with engine.connect() as conn:
        return list(conn.execute(select(table)))  # type: ignore[call-overload]


def test_two_reviewers_never_hold_the_same_item_and_an_expired_lease_frees_it(
    queue: ReviewQueue, clock: Clock
) -> None:
    for i in range(3):
        assert queue.add(review_item(i, f"e-{i}"))
    assert not queue.add(review_item(0, "e-0"))  # the same event again: already queued
    ann, bob = queue.lease("ann"), queue.lease("bob")
    assert ann is not None
    assert bob is not None
    assert ann.id != bob.id
    assert queue.lease("ann").id == ann.id  # type: ignore[union-attr]  # same item on reload
    with pytest.raises(NotLeased):
        queue.decide(ann.id, "bob", Answer("human"))
    clock.now += 61  # ann's lease expired: someone else may take it
    cid = queue.lease("cid")
    assert cid is not None
    assert cid.id in {ann.id, bob.id, 3}
    with pytest.raises(NotLeased):
        queue.decide(ann.id, "ann", Answer("human"))  # too late


def test_concurrent_leases_hand_out_each_item_once(queue: ReviewQueue) -> None:
    for i in range(12):
        queue.add(review_item(i, f"e-{i}"))
    got: dict[str, int] = {}
    lock = threading.Lock()

    def take(name: str) -> None:
        row = queue.lease(name)
        if row is not None:
            with lock:
                got[name] = row.id

    threads = [threading.Thread(target=take, args=(f"r{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8
    assert len(set(got.values())) == 8


def test_a_skipped_item_comes_back_after_the_others(queue: ReviewQueue) -> None:
    for i in range(3):
        queue.add(review_item(i, f"e-{i}"))
    first = queue.lease("ann")
    assert first is not None
    queue.skip(first.id, "ann")
    order = []
    for _ in range(3):
        row = queue.lease("ann")
        assert row is not None
        order.append(row.event_id)
        queue.decide(row.id, "ann", Answer("human"))
    assert order == ["e-1", "e-2", "e-0"]


def test_a_decision_writes_outbox_override_and_audit_and_closes_its_image(
    queue: ReviewQueue,
) -> None:
    image = png(7)
    queue.add(review_item(7, "e-1", image=image))
    queue.add(review_item(7, "e-2", image=image, caption="same image, other caption"))
    queue.add(review_item(8, "e-3"))
    row = queue.lease("ann")
    assert row is not None
    decision_id = queue.decide(row.id, "ann", Answer("sdxl"))
    assert queue.counts() == {"needs_review": 1, "qa_sample": 0, "decided": 2}
    (box,) = _rows(queue.engine, outbox)
    message = decode(ReviewDecision, box.payload.encode())  # type: ignore[attr-defined]
    assert (message.label_a, message.generators[message.label_b]) == (1, "sdxl")
    assert message.reviewer == "ann"
    assert box.decision_id == decision_id  # type: ignore[attr-defined]
    (override,) = _rows(queue.engine, overrides)
    assert not override.active  # type: ignore[attr-defined]  # on only once published
    label = HumanLabel.model_validate_json(override.label_json)  # type: ignore[attr-defined]
    assert (label.label_a, label.generator, label.reviewer) == (1, "sdxl", "ann")
    (line,) = _rows(queue.engine, audit)
    detail = json.loads(line.detail)  # type: ignore[attr-defined]
    assert line.action == "decide"  # type: ignore[attr-defined]
    assert (detail["model_p_ai"], detail["answer"]) == (0.55, "sdxl")
    other = queue.lease("ann")
    assert other is not None
    for hostile in ("not a/generator/x", "unknown", "x" * 65, "<b>", ""):
        with pytest.raises(AigisError, match=r"generator name|reserved"):
            queue.decide(other.id, "ann", Answer(hostile))


def test_a_reviewer_types_a_generator_outside_the_models_label_set(queue: ReviewQueue) -> None:
    queue.add(review_item(7, "e-1"))
    row = queue.lease("ann")
    assert row is not None
    queue.decide(row.id, "ann", Answer("OpenAI/GPT-Image-1"))
    (box,) = _rows(queue.engine, outbox)
    message = decode(ReviewDecision, box.payload.encode())  # type: ignore[attr-defined]
    assert message.generators == (*GENERATORS, "other")
    assert (message.generators[message.label_b], message.generator_name) == (
        "other",
        "openai/gpt-image-1",
    )
    (override,) = _rows(queue.engine, overrides)
    label = HumanLabel.model_validate_json(override.label_json)  # type: ignore[attr-defined]
    assert (label.label_a, label.generator) == (1, "openai/gpt-image-1")
    (decided,) = _rows(queue.engine, decisions)
    assert decided.generator == "openai/gpt-image-1"  # type: ignore[attr-defined]


def test_undo_before_publishing_publishes_nothing_and_gives_the_item_back(
    queue: ReviewQueue,
) -> None:
    queue.add(review_item(1, "e-1"))
    queue.add(review_item(2, "e-2"))
    row = queue.lease("ann")
    assert row is not None
    queue.decide(row.id, "ann", Answer("human"))
    assert queue.undo("ann") == row.id
    assert _rows(queue.engine, outbox) == []
    (decision,) = _rows(queue.engine, decisions)
    assert decision.revoked  # type: ignore[attr-defined]
    again = queue.lease("ann")
    assert again is not None
    assert again.id == row.id
    queue.decide(again.id, "ann", Answer("ai"))  # AI, generator unknown: recorded, not sent
    (box,) = _rows(queue.engine, outbox)
    assert box.payload == ""  # type: ignore[attr-defined]
    assert queue.undo("bob") is None


def test_a_restart_loses_nothing(database_url: str, clock: Clock) -> None:
    engine = open_database(database_url)
    first = ReviewQueue(engine, _settings(), clock)
    for i in range(3):
        first.add(review_item(i, f"e-{i}"))
    held = first.lease("ann")
    assert held is not None
    engine.dispose()

    engine = open_database(database_url)  # the console again
    second = ReviewQueue(engine, _settings(), clock)
    assert second.lease("ann").id == held.id  # type: ignore[union-attr]
    assert [r.event_id for r in second.waiting()] == ["e-0", "e-1", "e-2"]
    assert len(second.waiting(Filters(source="tenant-a", band="needs_review"))) == 3
    assert second.waiting(Filters(source="nobody")) == []
    engine.dispose()


def test_logins(database_url: str) -> None:
    engine = open_database(database_url)
    assert auth.set_reviewer(engine, "ann", "correct horse battery", "reviewer")
    assert not auth.set_reviewer(engine, "ann", "correct horse battery", "auditor")
    stored = _rows(engine, auth.reviewers)[0].password_hash  # type: ignore[attr-defined]
    assert "correct" not in stored
    assert stored.startswith("scrypt$")
    assert auth.login(engine, "ann", "wrong password!", 1) is None
    assert auth.login(engine, "nobody", "correct horse battery", 1) is None
    token = auth.login(engine, "ann", "correct horse battery", 1)
    session = auth.session_of(engine, token)
    assert session is not None
    assert (session.reviewer, session.role) == ("ann", "auditor")
    assert auth.session_of(engine, "forged-token") is None
    for _ in range(auth.LOCK_AFTER):
        assert auth.login(engine, "ann", "guessing wrong", 1) is None
    assert auth.login(engine, "ann", "correct horse battery", 1) is None  # locked for a while
    with engine.begin() as conn:
        conn.execute(auth.reviewers.update().values(locked_until=0.0))
    assert auth.login(engine, "ann", "correct horse battery", 1) is not None
    auth.disable_reviewer(engine, "ann")
    assert auth.session_of(engine, token) is None
    for name, password in (("a b", "long enough pw"), ("<x>", "long enough pw"), ("ok", "short")):
        with pytest.raises(auth.AuthError):
            auth.set_reviewer(engine, name, password, "reviewer")
    engine.dispose()


def test_wilson_interval_matches_the_hand_computed_one() -> None:
    low, high = wilson(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(5, 5)[1] == 1.0


def test_quality_report_measures_the_models_precision_on_its_samples(queue: ReviewQueue) -> None:
    # Ten quality samples the model called AI (naming sdxl) from tenant-a: eight really are.
    for i in range(10):
        item = review_item(i, f"q-{i}", p_ai=0.9)
        verdict = item.verdict.model_copy(
            update={"decision": Decision.AI_GENERATED, "generator": "sdxl", "qa_sample": True}
        )
        queue.add(item.model_copy(update={"verdict": verdict, "qa_sample": True}))
    queue.add(review_item(99, "uncertain"))  # not a sample: not counted
    assert queue.counts()["qa_sample"] == 10
    for _ in range(11):
        row = queue.lease("ann")
        assert row is not None
        label = "human" if row.event_id in {"q-3", "q-7", "uncertain"} else "sdxl"
        queue.decide(row.id, "ann", Answer(label))
    report = {(p.by, p.group, p.decision): p for p in quality_report(queue.engine)}
    assert set(report) == {
        ("source", "tenant-a", "ai_generated"),
        ("generator", "sdxl", "ai_generated"),
    }
    tenant = report[("source", "tenant-a", "ai_generated")]
    assert (tenant.samples, tenant.correct) == (10, 8)
    assert (round(tenant.low, 4), round(tenant.high, 4)) == (0.4902, 0.9433)

"""``aigis review``: answers, what is shown, and decisions that override pseudo-labels."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from aigis.review import (
    Reviewer,
    evidence_lines,
    generators_of,
    image_suffix,
    open_reviewer,
    parse_answer,
)
from schemas.codec import encode
from schemas.errors import AigisError
from schemas.labels import GENERATORS, Decision
from schemas.messages import Evidence, NearDuplicate, PseudoLabel, ReviewItem, Verdict
from schemas.settings import Settings
from training.labelstore import LabelStore
from worker import kafka
from worker.sink import run_sink

AIGIS = str(Path(sys.executable).with_name("aigis"))


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6, 6), (seed, 255 - seed, 9)).save(buffer, format="PNG")
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def review_item(image: bytes, event_id: str, *, uri: str | None = None) -> ReviewItem:
    probs = {name: round(1 / len(GENERATORS), 4) for name in GENERATORS}
    verdict = Verdict(
        event_id=event_id,
        image_sha256=sha(image),
        p_ai=0.55,
        decision=Decision.NEEDS_REVIEW,
        generator="unknown",
        generator_probs=probs,
        model_name="detector",
        model_version="1",
    )
    inline = None if uri else base64.b64encode(image).decode()
    return ReviewItem(verdict=verdict, caption="a red square", image_uri=uri, image_b64=inline)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("h\n", ("label", 0, 0)),
        (" HUMAN ", ("label", 0, 0)),
        ("2", ("label", 1, 2)),
        ("5", ("label", 1, 5)),
        ("s", ("skip", 0, 0)),
        ("q", ("quit", 0, 0)),
        ("6", None),
        ("0", None),
        ("sdxl", ("label", 1, 2)),
        ("flux/1-dev", ("label", 1, 6)),  # a new generator: "other", the name kept
        ("unknown", None),
        ("a/b/c", None),
        ("x" * 65, None),
    ],
)
def test_answers(text: str, expected: tuple[str, int, int] | None) -> None:
    answer = parse_answer(text, GENERATORS)
    got = None if answer is None else (answer.action, answer.label_a, answer.label_b)
    assert got == expected


@pytest.mark.unit
def test_a_new_generators_name_is_kept_beside_other() -> None:
    answer = parse_answer(" Flux/1-Dev\n", GENERATORS)
    assert answer is not None
    assert answer.generators == (*GENERATORS, "other")
    assert (answer.generators[answer.label_b], answer.generator_name) == ("other", "flux/1-dev")
    known = parse_answer("sd3", GENERATORS)
    assert known is not None
    assert (known.generators, known.generator_name) == (GENERATORS, None)


@pytest.mark.unit
def test_images_get_a_suffix_a_viewer_understands_and_the_models_generator_list() -> None:
    assert image_suffix(png(1)) == ".png"
    assert image_suffix(b"\xff\xd8\xff\xe0rest") == ".jpg"
    assert image_suffix(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == ".webp"
    assert image_suffix(b"???") == ".img"
    item = review_item(png(1), "e-1")
    assert generators_of(item) == GENERATORS
    other = item.model_copy(
        update={"verdict": item.verdict.model_copy(update={"generator_probs": {"a": 1.0}})}
    )
    assert generators_of(other) == GENERATORS  # a list not starting with "real" is not trusted


@pytest.mark.unit
def test_the_reviewer_sees_the_evidence_and_the_copy_a_verdict_rests_on() -> None:
    verdict = Verdict(
        event_id="e",
        image_sha256="a" * 64,
        p_ai=0.1,
        decision=Decision.NEEDS_REVIEW,
        generator="sdxl",
        model_name="detector",
        model_version="1",
        evidence=[
            Evidence(
                kind="a1111_parameters", value="Steps: 20", generator="sdxl", strength="claimed"
            )
        ],
        decided_by="evidence",
        near_duplicate_of=NearDuplicate(image_sha256="b" * 64, distance=3),
    )
    shown = evidence_lines(verdict)
    assert "evidence: a1111_parameters (claimed, sdxl): Steps: 20" in shown
    assert "copy of:  bbbbbbbbbbbbbbbb (distance 3)" in shown
    assert "decided:  by evidence" in shown
    assert (
        evidence_lines(verdict.model_copy(update={"evidence": [], "near_duplicate_of": None})) == ""
    )


@pytest.mark.unit
def test_a_reviewer_id_with_spaces_is_refused() -> None:
    with pytest.raises(AigisError, match=r"--reviewer jane\.doe"):
        Reviewer(
            Settings(),
            reviewer="Jane Doe",
            answers=io.StringIO(),
            out=io.StringIO(),
            image_dir=Path("."),
        )


@pytest.fixture
def review_settings(
    isolated_settings: Settings,
    make_topic: Callable[..., str],
    make_group_id: Callable[[], str],
    tmp_path: Path,
) -> Settings:
    """One-partition review topic (items come in the order sent), a fresh store and sink group."""
    topics = isolated_settings.topics.model_copy(update={"review": make_topic(partitions=1)})
    store = isolated_settings.store.model_copy(
        update={
            "url": str(tmp_path / "labels"),
            "group_id": make_group_id(),
            "flush_interval_s": 0.3,
            "metrics_port": 0,
        }
    )
    return isolated_settings.model_copy(update={"topics": topics, "store": store})


def publish(settings: Settings, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = kafka.producer(settings)
    try:
        for key, value in values:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)


def review(settings: Settings, group: str, answers: str) -> tuple[str, tuple[int, int, int]]:
    out = io.StringIO()
    with open_reviewer(
        settings, group_id=group, reviewer="tester", answers=io.StringIO(answers), out=out
    ) as reviewer:
        # Idle from the assignment on: long enough for a loaded machine's first fetch.
        stats = reviewer.run(idle_exit_s=6.0)
    return out.getvalue(), (stats.labelled, stats.skipped, stats.rejected)


@pytest.mark.integration
def test_review_decisions_are_published_and_override_pseudo_labels(
    review_settings: Settings, make_group_id: Callable[[], str], tmp_path: Path
) -> None:
    topics = review_settings.topics
    a, c, d = (png(i * 40) for i in range(3))
    file_c = tmp_path / "c.png"
    file_c.write_bytes(c)
    pseudo = PseudoLabel(
        image_b64=base64.b64encode(a).decode(),
        image_sha256=sha(a),
        label_a=1,
        label_b=2,
        confidence_a=0.97,
        confidence_b=0.96,
        event_id="p-a",
        model_name="detector",
        model_version="1",
    )
    publish(review_settings, topics.pseudo_labels, [(sha(a).encode(), encode(pseudo))])
    publish(
        review_settings,
        topics.review,
        [
            (b"e-a", encode(review_item(a, "e-a"))),
            (b"e-c", encode(review_item(c, "e-c", uri=file_c.as_uri()))),
            (b"e-bad", b'{"verdict": "not a verdict"}'),
            (b"e-d", encode(review_item(d, "e-d"))),
        ],
    )
    group = make_group_id()
    shown, stats = review(review_settings, group, "what?\nh\n3\nq\n")
    assert stats == (2, 0, 1)
    assert "answer h, 1..5, a generator's name" in shown
    assert f"image:    {file_c.as_uri()}" in shown
    assert f"{sha(a)}.png" in shown  # the inline image, written to a private file
    assert "sent to the DLQ" in shown
    assert "[3] Stable Diffusion 3" in shown

    # Quitting left e-d uncommitted: the next session shows it again; skipping sends it to the
    # back of the queue, so it comes back rather than leaving unreviewed.
    shown, stats = review(review_settings, group, "s\n")
    assert "event e-d" in shown
    assert stats == (0, 1, 0)
    shown, stats = review(review_settings, group, "")
    assert "event e-d" in shown
    assert stats == (0, 0, 0)

    run_sink(review_settings, threading.Event(), idle_exit_s=1.5)
    rows = {
        r["image_sha256"]: r for r in LabelStore.from_settings(review_settings).read().to_pylist()
    }
    assert set(rows) == {sha(a), sha(c)}
    assert (rows[sha(a)]["origin"], rows[sha(a)]["label_a"], rows[sha(a)]["reviewer"]) == (
        "human",
        0,
        "tester",
    )
    assert (rows[sha(c)]["generator"], rows[sha(c)]["image_uri"]) == ("sd3", file_c.as_uri())


@pytest.mark.integration
def test_a_reviewer_names_a_generator_outside_the_models_label_set(
    review_settings: Settings, make_group_id: Callable[[], str]
) -> None:
    topics = review_settings.topics
    image = png(77)
    publish(review_settings, topics.review, [(b"e-new", encode(review_item(image, "e-new")))])
    shown, stats = review(review_settings, make_group_id(), "Flux/1-Dev\n")
    assert stats == (1, 0, 0)
    assert "or a generator's name" in shown
    assert "saved: flux/1-dev" in shown

    run_sink(review_settings, threading.Event(), idle_exit_s=1.5)
    (row,) = LabelStore.from_settings(review_settings).read().to_pylist()
    assert (row["image_sha256"], row["origin"], row["label_a"]) == (sha(image), "human", 1)
    # It lands as "other" (no class of the model's set) with the name typed kept beside it.
    assert (row["generator"], row["generator_name"]) == ("other", "flux/1-dev")


@pytest.mark.integration
def test_the_command_reads_answers_from_a_pipe(
    review_settings: Settings, make_group_id: Callable[[], str]
) -> None:
    image = png(200)
    publish(
        review_settings, review_settings.topics.review, [(b"e", encode(review_item(image, "e")))]
    )
    env = {
        **os.environ,
        "AIGIS_TOPICS__REVIEW": review_settings.topics.review,
        "AIGIS_TOPICS__REVIEW_DECISIONS": review_settings.topics.review_decisions,
        "AIGIS_LOG_FORMAT": "json",
    }
    done = subprocess.run(
        [AIGIS, "review", "--reviewer", "ci", "--group", make_group_id(), "--idle-exit", "6"],
        input="1\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "done: 1 labelled, 0 skipped, 0 unreadable" in done.stdout


@pytest.mark.integration
def test_an_image_is_asked_once_each_answer_is_confirmed_and_the_queue_counted(
    review_settings: Settings, make_group_id: Callable[[], str]
) -> None:
    same, other = png(100), png(101)
    publish(
        review_settings,
        review_settings.topics.review,
        [
            (b"d-1", encode(review_item(same, "d-1"))),
            (b"d-2", encode(review_item(other, "d-2"))),
            (b"d-3", encode(review_item(same, "d-3"))),  # the same image, another caption/event
        ],
    )
    shown, stats = review(review_settings, make_group_id(), "h\ns\nq\n")
    assert "saved: human" in shown
    assert "queue:    2 more waiting" in shown
    assert "skipped: it goes back to the end of the queue" in shown
    assert "event d-3: the same image as one labelled human" in shown
    assert stats == (1, 1, 0)
    assert shown.count("-- event d-1") == 1

"""The label store: one label per image, crash-safe commits, compaction, and its readers."""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import sys
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import datasets
import pytest
from PIL import Image

from schemas.codec import encode
from schemas.messages import PseudoLabel, ReviewDecision
from schemas.settings import Settings, StoreSettings, TopicSettings
from training.data.registry import load_split
from training.data.sample import DataError, Sample
from training.labelstore import (
    ImageError,
    ImageHashMismatchError,
    LabelRecord,
    LabelStore,
    Origin,
    StoreError,
)
from training.labelstore.store import COMMITS, SHARDS
from worker.intake import RejectedRecordError, to_record

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TOPICS = TopicSettings()


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (seed % 256, (seed * 7) % 256, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pseudo(image: str, confidence: float, *, label_a: int = 1, minutes: int = 0) -> LabelRecord:
    return LabelRecord(
        image_sha256=image,
        origin=Origin.PSEUDO,
        label_a=label_a,
        label_b=2 if label_a else 0,
        generator="sdxl" if label_a else "real",
        labelled_at=T0 + timedelta(minutes=minutes),
        stored_at=T0 + timedelta(minutes=minutes),
        confidence=confidence,
        confidence_a=confidence,
        confidence_b=confidence,
        model_version="1",
    )


def human(image: str, label_a: int, *, minutes: int) -> LabelRecord:
    return LabelRecord(
        image_sha256=image,
        origin=Origin.HUMAN,
        label_a=label_a,
        label_b=4 if label_a else 0,
        generator="dalle3" if label_a else "real",
        labelled_at=T0 + timedelta(minutes=minutes),
        stored_at=T0 + timedelta(minutes=minutes),
        reviewer="ana",
    )


A, B, C = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> LabelStore:
    if request.param == "local":
        return LabelStore(str(tmp_path / "labels"), keep_image_bytes=True)
    return LabelStore(f"memory://{uuid.uuid4().hex}/labels", keep_image_bytes=True)


def labels(store: LabelStore, **kwargs: object) -> dict[str, tuple[str, int, str]]:
    rows = store.read(**kwargs).to_pylist()  # type: ignore[arg-type]
    return {r["image_sha256"]: (r["origin"], r["label_a"], r["generator"]) for r in rows}


def test_a_human_decision_overrides_pseudo_labels_and_the_latest_one_wins(
    store: LabelStore,
) -> None:
    store.append([pseudo(A, 0.9), pseudo(A, 0.99), pseudo(B, 0.85)])
    store.append([human(A, 0, minutes=5), human(A, 1, minutes=9), human(C, 0, minutes=1)])
    store.append([pseudo(A, 1.0, minutes=20)])  # a later, surer pseudo-label still loses
    assert labels(store) == {
        A: ("human", 1, "dalle3"),
        B: ("pseudo", 1, "sdxl"),
        C: ("human", 0, "real"),
    }
    assert set(labels(store, origin=Origin.PSEUDO)) == {B}
    assert set(labels(store, origin=Origin.HUMAN)) == {A, C}
    assert store.read(dedupe=False).num_rows == 7


def test_the_most_confident_pseudo_label_wins(store: LabelStore) -> None:
    store.append([pseudo(A, 0.95, label_a=0), pseudo(A, 0.9, label_a=1, minutes=3)])
    assert labels(store) == {A: ("pseudo", 0, "real")}


def test_redelivery_and_compaction_change_nothing(store: LabelStore) -> None:
    batch = [pseudo(A, 0.9), human(B, 1, minutes=1), pseudo(C, 0.8)]
    store.append(batch)
    before = store.read()
    store.append(batch)  # the same records again, as after a crash before the offset commit
    assert store.read().equals(before)
    compacted = store.compact()
    assert compacted is not None
    assert compacted.records == 3
    assert store.read().equals(before)
    assert len(store.snapshot().commits) == 1
    assert store.vacuum(grace_s=0).commits == 2
    assert store.read().equals(before)


def test_a_pinned_snapshot_stays_readable_after_compaction_and_vacuum(store: LabelStore) -> None:
    store.append([pseudo(A, 0.9)])
    store.append([pseudo(B, 0.9)])
    pinned = store.snapshot(pin=True)
    store.append([pseudo(C, 0.9)])
    store.compact()
    store.vacuum(grace_s=0)
    assert set(labels(store)) == {A, B, C}
    again = store.open_snapshot(pinned.id)
    assert set(store.read(again)["image_sha256"].to_pylist()) == {A, B}
    with pytest.raises(StoreError, match="no pinned snapshot"):
        store.open_snapshot("feedfacefeedface")


def test_snapshot_ids_name_the_content(store: LabelStore) -> None:
    empty = store.snapshot()
    store.append([pseudo(A, 0.9)])
    first = store.snapshot()
    assert first.id != empty.id
    assert store.snapshot().id == first.id
    store.append([pseudo(B, 0.9)])
    assert store.snapshot().id != first.id


def test_readers_never_see_a_shard_without_its_commit(tmp_path: Path) -> None:
    store = LabelStore(str(tmp_path / "labels"))
    store.append([pseudo(A, 0.9)])
    # What a crash leaves behind: a shard whose commit was never written, a temp file of a
    # commit being written, and a half-written shard under a temporary name.
    (tmp_path / "labels" / SHARDS / "orphan.parquet").write_bytes(b"PAR1 not really")
    (tmp_path / "labels" / COMMITS / ".0001-x.json.123.tmp").write_text('{"kind": "app')
    (tmp_path / "labels" / SHARDS / ".y.parquet.456.tmp").write_bytes(b"PAR1")
    assert set(labels(store)) == {A}


def test_a_commit_from_a_newer_aigis_is_refused(tmp_path: Path) -> None:
    store = LabelStore(str(tmp_path / "labels"))
    commit = store.append([pseudo(A, 0.9)])
    assert commit is not None
    path = tmp_path / "labels" / COMMITS / commit.name
    path.write_text(path.read_text().replace('"format_version": 1', '"format_version": 9'))
    with pytest.raises(StoreError, match="upgrade aigis"):
        store.read()


def test_images_are_content_addressed_and_checked(store: LabelStore) -> None:
    data = png(1)
    blob = store.put_image(data, sha(data))
    assert blob == f"blobs/{sha(data)[:2]}/{sha(data)}"
    assert store.put_image(data, sha(data)) == blob
    assert store.image_bytes(blob, None, sha256=sha(data)) == data
    with pytest.raises(ImageHashMismatchError, match="must hash the bytes"):
        store.put_image(data, "0" * 64)
    with pytest.raises(ImageError, match="without bytes or URI") as nothing:
        store.image_bytes(None, None, sha256=sha(data))
    assert nothing.value.reason == "no_image"


def test_no_pixels_are_stored_unless_retention_is_opted_in(tmp_path: Path) -> None:
    assert StoreSettings().keep_image_bytes is False
    for store in (
        LabelStore(str(tmp_path / "labels")),
        LabelStore.from_settings(Settings(store=StoreSettings(url=str(tmp_path / "labels")))),
    ):
        assert store.keep_image_bytes is False
        data = png(2)
        assert store.put_image(data, sha(data)) is None
    assert not (tmp_path / "labels" / "blobs").exists()


def test_intake_turns_messages_into_records_and_rejects_bad_ones(tmp_path: Path) -> None:
    store = LabelStore(str(tmp_path / "labels"), keep_image_bytes=True)
    data = png(3)
    message = PseudoLabel(
        image_b64=base64.b64encode(data).decode(),
        image_sha256=sha(data),
        label_a=1,
        label_b=3,
        confidence_a=0.97,
        confidence_b=0.91,
        caption="a lighthouse",
        event_id="e-1",
        model_name="detector",
        model_version="2",
    )
    record = to_record(store, TOPICS, TOPICS.pseudo_labels, encode(message), stored_at=T0)
    assert (record.origin, record.generator, record.label_b) == (Origin.PSEUDO, "sd3", 3)
    assert record.confidence == pytest.approx(0.91)
    assert record.image_blob is not None
    assert store.image_bytes(record.image_blob, None, sha256=sha(data)) == data

    with pytest.raises(RejectedRecordError) as bad_json:
        to_record(store, TOPICS, TOPICS.review_decisions, b"{not json", stored_at=T0)
    assert bad_json.value.reason == "not_json"
    lying = message.model_copy(update={"image_sha256": "1" * 64})
    with pytest.raises(RejectedRecordError) as mismatch:
        to_record(store, TOPICS, TOPICS.pseudo_labels, encode(lying), stored_at=T0)
    assert mismatch.value.reason == "image_hash_mismatch"


def test_a_review_decision_with_another_generator_list_keeps_the_name(tmp_path: Path) -> None:
    store = LabelStore(str(tmp_path / "labels"))
    decision = ReviewDecision(
        image_uri="file:///data/x.png",
        image_sha256=A,
        label_a=1,
        label_b=1,
        generators=("real", "flux"),
        reviewer="ana",
    )
    record = to_record(store, TOPICS, TOPICS.review_decisions, encode(decision), stored_at=T0)
    assert (record.origin, record.generator, record.label_b) == (Origin.HUMAN, "flux", None)
    assert record.image_uri == "file:///data/x.png"
    assert record.image_blob is None


@pytest.fixture
def filled(tmp_path: Path) -> LabelStore:
    """A store of 40 images with blobs: 30 pseudo-labelled, 10 of them also by a person."""
    store = LabelStore(str(tmp_path / "labels"), keep_image_bytes=True)
    records = []
    for i in range(40):
        data = png(i)
        blob = store.put_image(data, sha(data))
        records.append(replace(pseudo(sha(data), 0.8 + i / 400, label_a=i % 2), image_blob=blob))
        if i >= 30:
            records.append(replace(human(sha(data), 1, minutes=i), image_blob=blob))
    store.append(records)
    return store


def test_pandas_and_datasets_read_the_store(filled: LabelStore) -> None:
    table = filled.read()
    frame = table.to_pandas()
    assert len(frame) == 40
    assert frame["image_sha256"].is_unique
    assert (frame["origin"] == "human").sum() == 10
    dataset = datasets.Dataset(table)
    assert dataset.num_rows == 40
    assert "label_a" in dataset.column_names


def test_training_reads_the_store_through_the_reader_registry(filled: LabelStore) -> None:
    spec = f"labels://{filled.url}"
    everything = [
        s for split in ("train", "validation", "test") for s in _split_or_empty(spec, split)
    ]
    assert len(everything) == 40
    humans = [
        s
        for split in ("train", "validation", "test")
        for s in _split_or_empty(f"{spec}?origin=human", split)
    ]
    assert len(humans) == 10
    assert all(s.label_a == 1 and s.label_b == 4 for s in humans)
    raw = _split_or_empty(f"{spec}?origin=pseudo", "train", normalise=False)
    assert all(s.sha256 == sha(s.image) for s in raw)
    # a bare directory with a commit log is claimed too
    assert len(_split_or_empty(filled.url, "train")) == len(_split_or_empty(spec, "train"))
    with pytest.raises(DataError, match="origin must be one of"):
        load_split(f"{spec}?origin=robots", "train")
    with pytest.raises(DataError, match="unknown option"):
        load_split(f"{spec}?colour=red", "train")


def _split_or_empty(spec: str, split: str, *, normalise: bool = True) -> list[Sample]:
    try:
        return list(load_split(spec, split, normalise=normalise))
    except DataError as err:
        if "is empty" in str(err):
            return []
        raise


def test_the_store_sink_review_and_registry_import_no_torch() -> None:
    code = (
        "import sys, training.labelstore, worker.sink, aigis.review\n"
        "import training.registry, aigis.promote, aigis.retrain\n"
        "heavy = {'torch', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

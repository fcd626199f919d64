"""Image bytes in the label store are deleted once no record names them (after the grace)."""

from __future__ import annotations

import hashlib
import io
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from training.labelstore import LabelRecord, LabelStore, Origin, blob_path

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = 24 * 3600.0


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (seed % 256, 40, (seed * 3) % 256)).save(buffer, format="PNG")
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def label(data: bytes, origin: Origin, *, blob: str | None, minutes: int = 0) -> LabelRecord:
    return LabelRecord(
        image_sha256=sha(data),
        origin=origin,
        label_a=1,
        label_b=2,
        generator="sdxl",
        labelled_at=T0.replace(minute=minutes),
        stored_at=T0.replace(minute=minutes),
        confidence=0.95 if origin is Origin.PSEUDO else None,
        image_blob=blob,
        image_uri=None if blob else "file:///images/x.png",
    )


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> LabelStore:
    if request.param == "local":
        return LabelStore(str(tmp_path / "labels"), keep_image_bytes=True)
    return LabelStore(f"memory://{uuid.uuid4().hex}/labels", keep_image_bytes=True)


def kept(store: LabelStore, *images: bytes) -> set[bytes]:
    return {i for i in images if store._fs.exists(blob_path(sha(i)))}


def test_blobs_no_remaining_record_names_are_deleted_after_the_grace(store: LabelStore) -> None:
    replaced, live, orphan = png(1), png(2), png(3)
    store.append(
        [
            label(replaced, Origin.PSEUDO, blob=store.put_image(replaced, sha(replaced))),
            label(live, Origin.PSEUDO, blob=store.put_image(live, sha(live))),
        ]
    )
    store.put_image(orphan, sha(orphan))  # the sink died before committing its record
    # A person labels the first image by URI: its pseudo-label, the only record naming the
    # blob, is dropped by compaction.
    store.append([label(replaced, Origin.HUMAN, blob=None, minutes=5)])
    store.compact()

    within = store.vacuum(grace_s=DAY)
    assert (within.commits, within.blobs) == (0, 0)
    assert kept(store, replaced, live, orphan) == {replaced, live, orphan}

    time.sleep(0.05)
    after = store.vacuum(grace_s=0.01)
    assert (after.commits, after.blobs) == (2, 2)
    assert kept(store, replaced, live, orphan) == {live}
    rows = {r["image_sha256"]: r for r in store.read().to_pylist()}
    assert store.image_bytes(rows[sha(live)]["image_blob"], None, sha256=sha(live)) == live


def test_a_pinned_snapshot_keeps_the_blobs_its_records_name(store: LabelStore) -> None:
    image = png(4)
    store.append([label(image, Origin.PSEUDO, blob=store.put_image(image, sha(image)))])
    pinned = store.snapshot(pin=True)
    store.append([label(image, Origin.HUMAN, blob=None, minutes=5)])
    store.compact()
    time.sleep(0.05)
    assert store.vacuum(grace_s=0.01).blobs == 0
    [row] = store.read(store.open_snapshot(pinned.id)).to_pylist()
    assert store.image_bytes(row["image_blob"], None, sha256=sha(image)) == image


def test_putting_a_kept_image_again_restarts_its_grace(tmp_path: Path) -> None:
    store = LabelStore(str(tmp_path / "labels"), keep_image_bytes=True)
    again, forgotten = png(5), png(6)
    for image in (again, forgotten):
        store.put_image(image, sha(image))
        old = time.time() - 2 * DAY
        os.utime(tmp_path / "labels" / blob_path(sha(image)), (old, old))
    # A message carrying the first image arrives again; its record is not committed yet.
    store.put_image(again, sha(again))
    assert store.vacuum(grace_s=DAY).blobs == 1
    assert kept(store, again, forgotten) == {again}


def test_vacuum_deletes_only_under_blobs(tmp_path: Path) -> None:
    root = tmp_path / "labels"
    store = LabelStore(str(root), keep_image_bytes=True)
    image = png(7)
    store.put_image(image, sha(image))
    crashed = root / "blobs" / sha(image)[:2] / ".abc.0123.tmp"  # a write that never finished
    crashed.write_bytes(b"partial pixels")
    beside = root / "notes.txt"
    beside.write_text("not a blob")
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(image)
    old = time.time() - 2 * DAY
    for path in (crashed, beside, outside, root / blob_path(sha(image))):
        os.utime(path, (old, old))
    assert store.vacuum(grace_s=DAY).blobs == 2
    assert not crashed.exists()
    assert beside.read_text() == "not a blob"
    assert outside.read_bytes() == image

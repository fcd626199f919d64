"""What a retraining cycle reads from the label store: checked images, skipped and counted.

A local store whose records point at ``file://`` URIs, as the sink writes them with
``keep_image_bytes`` off; the files are then changed, removed or swapped the way images behind
real URLs are.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from aigis.fetching import install_fetch_policy
from schemas.labels import GENERATORS
from schemas.settings_fetch import FetchSettings
from training.data import load_split, make_sample
from training.data.parquet import write_ct2
from training.labelstore import ImageError, LabelRecord, LabelStore, Origin
from training.labelstore.fetch import install_uri_reader
from training.retrain_data import TooFewImagesError, gold_holdout, mixed_spec, read_images

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def png(seed: int, size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (seed % 256, (seed * 7) % 256, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record(
    data: bytes,
    *,
    uri: str | None = None,
    blob: str | None = None,
    origin: Origin = Origin.PSEUDO,
    image_sha256: str | None = None,
) -> LabelRecord:
    return LabelRecord(
        image_sha256=image_sha256 or sha(data),
        origin=origin,
        label_a=1,
        label_b=GENERATORS.index("sdxl"),
        generator="sdxl",
        labelled_at=T0,
        stored_at=T0,
        confidence=0.99 if origin is Origin.PSEUDO else None,
        image_uri=uri,
        image_blob=blob,
    )


def on_disk(directory: Path, name: str, data: bytes) -> str:
    path = directory / name
    path.write_bytes(data)
    return path.as_uri()


@pytest.fixture(autouse=True)
def fetch_policy(tmp_path: Path) -> Iterator[None]:
    """The policy ``aigis retrain`` installs, with this test's directory as the one file root."""
    install_fetch_policy(FetchSettings(file_roots=(tmp_path,)))
    yield
    install_uri_reader(None)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    place = tmp_path / "images"
    place.mkdir()
    return place


@pytest.fixture
def store(tmp_path: Path) -> LabelStore:
    return LabelStore(str(tmp_path / "labels"), keep_image_bytes=False, max_image_bytes=4096)


@pytest.fixture
def base(tmp_path: Path) -> str:
    """A CT2 data set of real and SDXL images, disjoint from the store's."""
    sdxl = GENERATORS.index("sdxl")
    samples = [make_sample(png(1000 + i), None, i % 2, sdxl if i % 2 else 0) for i in range(12)]
    root = tmp_path / "base"
    write_ct2(root / "train.parquet", samples[:6])
    write_ct2(root / "validation.parquet", samples[6:8])
    write_ct2(root / "test.parquet", samples[8:])
    return str(root)


def test_images_are_checked_and_the_unusable_ones_skipped_by_reason(
    store: LabelStore, images: Path, base: str, tmp_path: Path
) -> None:
    good = [png(i) for i in range(5)]
    changed, missing = png(50), png(51)
    records = [record(data, uri=on_disk(images, f"{i}.png", data)) for i, data in enumerate(good)]
    records.append(record(changed, uri=on_disk(images, "changed.png", changed)))
    records.append(record(missing, uri=on_disk(images, "missing.png", missing)))
    big = bytes(range(256)) * 20  # over the store's limit; never decoded
    records.append(record(big, uri=on_disk(images, "large.png", big)))
    store.append(records)
    # After labelling: one image is replaced behind its URI, one is removed.
    (images / "changed.png").write_bytes(png(60))
    (images / "missing.png").unlink()
    assert len(big) > store.max_image_bytes

    spool = tmp_path / "spool"
    spool.mkdir()
    spec, sizes = mixed_spec(base, store, store.read(), spool=spool, min_usable=5)

    assert sizes["usable"] == 5
    assert sizes["skipped.image_hash_mismatch"] == 1
    assert sizes["skipped.unreachable_uri"] == 1
    assert sizes["skipped.image_too_large"] == 1
    assert sizes["train_total"] == sizes["base_train"] + 5
    train = list(load_split(spec, "train", normalise=False))
    base_train = load_split(base, "train", normalise=False)
    extra = {s.sha256 for s in train} - {s.sha256 for s in base_train}
    assert extra == {sha(data) for data in good}
    assert all(sha(s.image) == s.sha256 for s in train)
    # Training reads the checked copies: what happens at the URIs afterwards changes nothing.
    for i in range(5):
        (images / f"{i}.png").unlink()
    assert len(list(load_split(spec, "train", normalise=False))) == len(train)


def test_a_cycle_below_the_minimum_stops_before_training_with_a_clear_message(
    store: LabelStore, images: Path, base: str, tmp_path: Path
) -> None:
    kept, gone = png(1), png(2)
    store.append(
        [
            record(kept, uri=on_disk(images, "kept.png", kept)),
            record(gone, uri=(images / "gone.png").as_uri()),
        ]
    )
    with pytest.raises(TooFewImagesError) as caught:
        mixed_spec(base, store, store.read(), spool=tmp_path, min_usable=2)
    message = str(caught.value)
    assert "only 1 of 2 selected pseudo-labels have a usable image" in message
    assert "unreachable_uri 1" in message
    assert "AIGIS_RETRAIN__MIN_USABLE_ITEMS" in message
    assert "nothing was trained" in message


def test_an_image_swapped_for_a_hold_out_image_is_never_trained_on(
    store: LabelStore, images: Path, base: str, tmp_path: Path
) -> None:
    """The hold-out is excluded by hash; re-fetched bytes must be what that hash names."""
    holdout_image = load_split(base, "test", normalise=False)[0].image
    labelled = png(7)
    uri = on_disk(images, "feed.png", labelled)
    store.append([record(labelled, uri=uri), record(png(8), uri=on_disk(images, "b.png", png(8)))])
    snapshot = store.snapshot()
    holdout = gold_holdout(base, store, snapshot, GENERATORS)
    assert sha(labelled) not in holdout.exclude
    (images / "feed.png").write_bytes(holdout_image)  # the URL now serves a hold-out image

    spec, sizes = mixed_spec(base, store, store.read(snapshot), spool=tmp_path)
    trained = {s.sha256 for s in load_split(spec, "train", normalise=False)}
    assert sha(holdout_image) not in trained
    assert sha(labelled) not in trained
    assert sizes["skipped.image_hash_mismatch"] == 1


def test_hold_out_human_decisions_with_unusable_images_are_left_out_but_excluded(
    store: LabelStore, images: Path, base: str
) -> None:
    fine, changed, gone = png(20), png(21), png(22)
    store.append(
        [
            record(fine, uri=on_disk(images, "fine.png", fine), origin=Origin.HUMAN),
            record(changed, uri=on_disk(images, "changed.png", changed), origin=Origin.HUMAN),
            record(gone, uri=(images / "gone.png").as_uri(), origin=Origin.HUMAN),
        ]
    )
    (images / "changed.png").write_bytes(png(23))
    holdout = gold_holdout(base, store, store.snapshot(), GENERATORS)
    assert holdout.counts["holdout_human"] == 1
    assert holdout.counts["holdout_skipped.image_hash_mismatch"] == 1
    assert holdout.counts["holdout_skipped.unreachable_uri"] == 1
    assert {sha(fine), sha(changed), sha(gone)} <= holdout.exclude


def test_kept_blobs_are_checked_too(tmp_path: Path) -> None:
    store = LabelStore(str(tmp_path / "labels"), keep_image_bytes=True)
    intact, corrupted, removed = png(30), png(31), png(32)
    records = [record(data, blob=store.put_image(data, sha(data))) for data in (intact, corrupted)]
    records.append(record(removed, blob=store.put_image(removed, sha(removed))))
    # A hash that is not a hash must never become a path, whatever the record's blob says.
    records.append(record(intact, blob="blobs/../../../outside", image_sha256="../../outside"))
    store.append(records)
    (tmp_path / "outside").write_bytes(intact)
    blobs = tmp_path / "labels" / "blobs"
    (blobs / sha(corrupted)[:2] / sha(corrupted)).write_bytes(b"bit rot")
    (blobs / sha(removed)[:2] / sha(removed)).unlink()

    seen: dict[int, bytes] = {}
    table = store.read(dedupe=False)
    reads = read_images(store, table, seen.__setitem__, concurrency=3)
    assert [seen[i] for i in reads.rows] == [intact]
    assert reads.skipped == {"image_hash_mismatch": 1, "invalid_record": 1, "missing_blob": 1}


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("file:///nonexistent/x.png", "uri_not_allowed"),  # outside the file roots
        ("file:///", "uri_not_allowed"),
        ("http://127.0.0.1:9/x.png?X-Amz-Signature=secret", "uri_not_allowed"),  # loopback
        ("https://169.254.169.254/latest/meta-data/", "uri_not_allowed"),
        ("gopher://example.invalid/x", "uri_not_allowed"),
        ("file:///dev/zero", "uri_not_allowed"),
    ],
)
def test_hostile_uris_become_reasons_not_crashes(store: LabelStore, uri: str, reason: str) -> None:
    with pytest.raises(ImageError) as caught:
        store.image_bytes(None, uri, sha256=sha(b"x"))
    assert caught.value.reason == reason
    assert "secret" not in str(caught.value)


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=64), claimed=st.one_of(st.none(), st.text(max_size=70)))
def test_bytes_are_returned_only_under_their_own_hash(
    tmp_path: Path, data: bytes, claimed: str | None
) -> None:
    path = tmp_path / "image.bin"
    path.write_bytes(data)
    store = LabelStore(str(tmp_path / "labels"))
    expected = sha(data) if claimed is None else claimed
    if expected == sha(data) and data:
        assert store.image_bytes(None, path.as_uri(), sha256=expected) == data
        return
    with pytest.raises(ImageError) as caught:
        store.image_bytes(None, path.as_uri(), sha256=expected)
    assert caught.value.reason in {"invalid_record", "image_hash_mismatch", "empty_image"}


def test_a_process_without_a_fetch_policy_reads_no_uri(store: LabelStore, images: Path) -> None:
    install_uri_reader(None)
    data = png(7)
    with pytest.raises(ImageError) as caught:
        store.image_bytes(None, on_disk(images, "a.png", data), sha256=sha(data))
    assert caught.value.reason == "uri_not_allowed"


def test_a_missing_file_under_a_root_is_unreachable(store: LabelStore, images: Path) -> None:
    with pytest.raises(ImageError) as caught:
        store.image_bytes(None, (images / "gone.png").as_uri(), sha256=sha(b"x"))
    assert caught.value.reason == "unreachable_uri"


GROWN = (*GENERATORS, "other", "flux/1-dev")
"""A label set grown by a generator reviewers named while it was outside the set."""


def typed(data: bytes, images: Path, name: str) -> LabelRecord:
    """A reviewer's decision typing ``name`` when the set lacked it: ``other``, name kept."""
    uri = on_disk(images, f"{sha(data)[:8]}.png", data)
    return replace(
        record(data, uri=uri, origin=Origin.HUMAN),
        generator="other",
        label_b=None,
        generator_name=name,
    )


def test_a_typed_name_counts_as_its_class_once_the_set_has_it(
    store: LabelStore, images: Path, base: str
) -> None:
    flux, unnamed = png(30), png(31)
    store.append([typed(flux, images, "flux/1-dev"), typed(unnamed, images, "seedream/4")])
    holdout = gold_holdout(base, store, store.snapshot(), GROWN)
    classes = Counter(GROWN[s.label_b] for s in holdout.samples)
    assert holdout.counts["holdout_human"] == 2
    assert (classes["flux/1-dev"], classes["other"]) == (1, 1)


def test_the_examples_of_a_generator_being_added_are_not_gold_for_it(
    store: LabelStore, images: Path, base: str
) -> None:
    """They train the new class and make its own hold-out; counted as gold ``other`` too,
    the candidate would be scored on images it was trained on."""
    flux, unnamed = png(32), png(33)
    store.append([typed(flux, images, "flux/1-dev"), typed(unnamed, images, "seedream/4")])
    champion = (*GENERATORS, "other")
    holdout = gold_holdout(base, store, store.snapshot(), champion, leave_out="flux/1-dev")
    assert holdout.counts["holdout_human"] == 1  # the seedream decision, as "other"
    assert Counter(champion[s.label_b] for s in holdout.samples)["other"] == 1
    assert sha(flux) in holdout.exclude  # and never a pseudo-label either


def test_pseudo_labels_of_a_grown_class_train_on_the_grown_set(
    store: LabelStore, images: Path, base: str, tmp_path: Path
) -> None:
    """After a generator was added, the model in service names it: later cycles train on its
    label set, not on the base data's."""
    data = png(34)
    pseudo = replace(
        record(data, uri=on_disk(images, "grown.png", data)),
        generator="flux/1-dev",
        label_b=GROWN.index("flux/1-dev"),
    )
    store.append([pseudo])
    spec, _ = mixed_spec(base, store, store.read(), spool=tmp_path, generators=GROWN)
    trained = {s.sha256: s.label_b for s in load_split(spec, "train", normalise=False)}
    assert trained[sha(data)] == GROWN.index("flux/1-dev")

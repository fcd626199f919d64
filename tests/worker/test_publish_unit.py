"""What ``aigis publish`` reads and sends, without Kafka: probing, skips, external ids, manifest."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from schemas.limits import MAX_ID_CHARS, MAX_INLINE_IMAGE_BYTES
from worker.publish import (
    ImageInput,
    PublishError,
    external_id,
    make_events,
    manifest_line,
    plan_events,
    read_source,
    with_manifest,
)

pytestmark = pytest.mark.unit


def png(colour: int = 0) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (colour, 0, 0)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    (root / "nested").mkdir(parents=True)
    (root / "a.png").write_bytes(png(1))
    (root / "nested" / "b.png").write_bytes(png(2))
    (root / "notes.txt").write_text("not a picture\n")
    (root / "fake.jpg").write_bytes(b"plain text with an image suffix")
    return root


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cat.png", "cat.png"),
        ("my photo (1).jpg", "my_photo_1_.jpg"),
        ("café.jpg", "cafe.jpg"),
        (".hidden.png", "hidden.png"),
        ("IMG_0001.JPEG", "IMG_0001.JPEG"),
        ("a;b|c.png", "a_b_c.png"),
    ],
)
def test_external_ids_are_names_made_valid_identifiers(name: str, expected: str) -> None:
    assert external_id(name, "x") == expected


@pytest.mark.parametrize("name", ["___", "@@..", "日本"])
def test_a_name_without_letters_or_digits_is_refused(name: str) -> None:
    with pytest.raises(PublishError, match="no letter or digit"):
        external_id(name, "imgs/odd")


def test_an_over_long_name_is_refused_with_the_limit() -> None:
    with pytest.raises(PublishError, match=f"over the limit of {MAX_ID_CHARS}"):
        external_id("a" * (MAX_ID_CHARS + 1), "imgs/long")


def test_a_single_file_that_is_not_an_image_is_refused(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(PublishError, match=r"notes\.txt cannot be published: not an image"):
        read_source(str(notes))


def test_an_over_large_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (MAX_INLINE_IMAGE_BYTES + 1))
    with pytest.raises(PublishError, match="--by-uri"):
        read_source(str(big))


def test_a_directory_publishes_its_images_and_reports_what_it_skipped(folder: Path) -> None:
    inputs = read_source(str(folder), external_id_from="name")
    images = list(inputs.images)
    assert [Path(i.file or "").name for i in images] == ["a.png", "b.png"]
    assert [i.external_id for i in images] == ["a.png", "b.png"]
    assert inputs.files == 4
    assert [s.file for s in inputs.skipped] == ["fake.jpg", "notes.txt"]
    assert all(s.reason.startswith("not an image") for s in inputs.skipped)


def test_external_ids_from_paths_keep_the_folders(folder: Path) -> None:
    images = list(read_source(str(folder), external_id_from="path").images)
    assert [i.external_id for i in images] == ["a.png", "nested/b.png"]


def test_two_files_that_make_one_external_id_are_refused(folder: Path) -> None:
    (folder / "other").mkdir()
    (folder / "other" / "a.png").write_bytes(png(3))
    with pytest.raises(PublishError, match="use --external-id-from path"):
        read_source(str(folder), external_id_from="name")
    assert len(list(read_source(str(folder), external_id_from="path").images)) == 3


def test_a_directory_without_images_is_refused_naming_a_skip(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(PublishError, match=r"\(1 file, none an image; notes\.txt: not an image"):
        read_source(str(tmp_path))


def test_external_ids_need_files() -> None:
    with pytest.raises(PublishError, match="--external-id-from needs image files"):
        read_source("smoke", external_id_from="name")


def test_events_carry_the_external_id_and_source(folder: Path) -> None:
    inputs = read_source(str(folder), external_id_from="name")
    events = list(make_events(inputs.images, source="alice"))
    assert [(e.external_id, e.source) for e in events] == [("a.png", "alice"), ("b.png", "alice")]


def test_manifest_lines_name_the_file_and_the_event(folder: Path) -> None:
    inputs = read_source(str(folder), external_id_from="name")
    out = io.StringIO()
    sent = list(with_manifest(plan_events(inputs.images, source="alice"), out))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event_id"] for line in lines] == [e.event_id for e in sent]
    first = lines[0]
    assert first["file"] == str(folder / "a.png")
    assert (first["external_id"], first["source"]) == ("a.png", "alice")
    assert len(first["image_sha256"]) == 64
    assert "uri" not in first


def test_manifest_lines_of_uris_carry_the_uri(folder: Path) -> None:
    inputs = read_source(str(folder / "a.png"), by_uri=True)
    ((item, event),) = list(plan_events(inputs.images))
    line = json.loads(manifest_line(item, event))
    assert line["uri"] == (folder / "a.png").resolve().as_uri()
    assert line["external_id"] is None
    assert "image_sha256" not in line


def test_manifest_lines_of_data_set_images_have_no_file() -> None:
    ((item, event),) = list(plan_events([ImageInput(image=png())]))
    assert set(json.loads(manifest_line(item, event))) == {
        "event_id",
        "external_id",
        "source",
        "image_sha256",
    }

"""``aigis publish`` against the real Kafka: a directory with a manifest and external ids."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from schemas import ImageEvent, decode
from schemas.settings import Settings
from tests.streams import subprocess_env

pytestmark = pytest.mark.integration

AIGIS = str(Path(sys.executable).parent / "aigis")


def png(colour: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (colour, 0, 0)).save(out, format="PNG")
    return out.getvalue()


def test_a_directory_publish_sends_external_ids_and_writes_the_manifest(
    isolated_settings: Settings, read_topic: Callable[..., list[Any]], tmp_path: Path
) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    names = ["cat.png", "dog photo.png", "café.png"]
    for i, name in enumerate(names):
        (folder / name).write_bytes(png(i))
    (folder / "notes.txt").write_text("not an image")
    manifest = tmp_path / "manifest.jsonl"

    command = [AIGIS, "publish", str(folder), "--manifest", str(manifest)]
    published = subprocess.run(
        [*command, "--external-id-from", "name", "--source", "alice"],
        env=subprocess_env(isolated_settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    assert f"published 3 events to {isolated_settings.topics.images}" in published.stdout
    assert "skipped 1 of 4 files" in published.stdout
    assert "notes.txt: not an image" in published.stdout
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    by_event = {line["event_id"]: line for line in lines}
    records = read_topic(isolated_settings.topics.images, 3)
    events = [decode(ImageEvent, r.value) for r in records]
    assert len(events) == 3
    assert {e.event_id for e in events} == set(by_event)
    for event in events:
        line = by_event[event.event_id]
        assert event.source == "alice"
        assert event.external_id == line["external_id"]
        assert Path(line["file"]).parent == folder
    assert {e.external_id for e in events} == {"cat.png", "dog_photo.png", "cafe.png"}

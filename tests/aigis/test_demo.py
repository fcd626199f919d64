"""`aigis demo --round-trip`: one event through the real broker and back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.settings import Settings

pytestmark = pytest.mark.integration


def test_demo_publishes_and_reads_back_an_event(kafka_ready: Settings) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("aigis")), "demo", "--round-trip"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "already running" in done.stdout  # the suite's stack, not a second one
    printed = done.stdout[done.stdout.index("{") : done.stdout.rindex("}") + 1]
    event = json.loads(printed)
    assert event["event_id"].startswith("demo-")
    assert event["source"] == "aigis-demo"
    assert "bytes PNG)" in event["image_b64"]
    assert "aigis dev down" in done.stdout

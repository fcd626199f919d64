"""Worker entry points refuse a slot they cannot have with a clear error, before touching Kafka."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker.runtime.slots import claim_slot, slot_directory

pytestmark = pytest.mark.unit

AIGIS = str(Path(sys.executable).parent / "aigis")


def env(state_dir: Path, **settings: str) -> dict[str, str]:
    return {
        **os.environ,
        "AIGIS_STATE_DIR": str(state_dir),
        "AIGIS_LOG_FORMAT": "json",
        "AIGIS_WORKER__GROUP_ID": "g",
        # Nothing listens here: a test that reached Kafka would fail, not pass.
        "AIGIS_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9",
        **settings,
    }


def test_a_worker_whose_fixed_slot_is_held_exits_with_the_reason(tmp_path: Path) -> None:
    with claim_slot(slot_directory(tmp_path), "g", fixed=0):
        done = subprocess.run(
            [sys.executable, "-m", "aigis.run"],
            env=env(tmp_path, AIGIS_WORKER__SLOT="0"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    failed = [line for line in lines if line["event"] == "worker_failed"]
    assert failed, done.stderr
    assert "slot 0 of group 'g' is held by another process" in failed[0]["error"]
    assert f"pid {os.getpid()}" in failed[0]["error"]


def test_a_fixed_slot_cannot_serve_several_processes(tmp_path: Path) -> None:
    done = subprocess.run(
        [AIGIS, "worker", "--processes", "2"],
        env=env(tmp_path, AIGIS_WORKER__SLOT="3"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "AIGIS_WORKER__SLOT fixes the slot of one process" in done.stderr

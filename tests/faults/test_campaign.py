"""One seed of the fault campaign per run of the suite (``make faults`` runs many).

The seed comes from the commit under test, so every commit tries a different combination of
faults and a failure can be replayed with ``make faults SEED=<seed>``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def commit_seed() -> int:
    """The first 6 hex digits of the commit as a number (0 outside a git checkout)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 0
    return int(head[:6], 16)


def test_one_seed_of_faults_combined_leaves_every_event_exactly_one_outcome(
    tmp_path: Path,
) -> None:
    seed = commit_seed()
    print(f"fault campaign seed {seed}; replay with: make faults SEED={seed}")
    command = [sys.executable, "-m", "tests.faults.campaign", "--seed", str(seed)]
    result = subprocess.run(
        [*command, "--events", "1500", "--workdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=840,  # under the suite's 900 s per test, so the campaign's own clean-up runs
    )
    print(result.stdout)
    assert result.returncode == 0, (
        f"seed {seed} failed (make faults SEED={seed}):\n{result.stdout[-8000:]}\n"
        f"{result.stderr[-4000:]}"
    )

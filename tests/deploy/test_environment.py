"""Each checkout has its own environment: building a second clone's leaves this one alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.unit, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _imported_from(python: Path, cwd: Path) -> Path:
    """Where ``python`` imports aigis from, run outside any checkout's source tree."""
    out = subprocess.run(
        [str(python), "-c", "import aigis, pathlib; print(pathlib.Path(aigis.__file__).parent)"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip()).resolve()


def test_a_second_clone_builds_its_own_environment(tmp_path: Path) -> None:
    if not (ROOT / ".git").exists():
        pytest.fail("this test clones the repository: run it from a git checkout")
    ours = Path(sys.prefix)
    assert _imported_from(ours / "bin" / "python", tmp_path) == ROOT / "aigis"

    clone = tmp_path / "second"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    subprocess.run(["bash", "scripts/venv.sh"], cwd=clone, check=True, timeout=900)

    theirs = clone / ".venv"
    assert not theirs.is_symlink(), "each checkout owns its .venv"
    assert _imported_from(theirs / "bin" / "python", tmp_path) == (clone / "aigis").resolve()
    # Building the second environment changed nothing of the first.
    assert _imported_from(ours / "bin" / "python", tmp_path) == ROOT / "aigis"
    assert (theirs / "bin" / "aigis").is_file()
    aigis = subprocess.run(
        [str(ours / "bin" / "aigis"), "--help"], capture_output=True, text=True, check=False
    )
    assert aigis.returncode == 0, aigis.stderr

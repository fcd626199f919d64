"""The README's quickstart, run as it is written, on a stack of its own.

The block runs with bash in an empty directory, with its own state directory and every default
port moved by ``AIGIS_DEV__PORT_OFFSET`` (``AIGIS_QUICKSTART_PORT_OFFSET``, default 30000), so it
never meets the test stack or a developer's own. Whatever the block leaves running when it fails
is stopped afterwards: its process group, TorchServe and the dev stack of its state directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

README = Path(__file__).resolve().parents[2] / "README.md"
TIMEOUT_S = 300
VERDICT = re.compile(r"^\d+:\d+\s+\S+\s+(ai_generated|human|needs_review)\s+p_ai=", re.MULTILINE)


def quickstart() -> str:
    """The first bash block of the README's Quickstart section."""
    section = README.read_text().split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert found, "README.md's Quickstart section has no ```bash block"
    return found.group(1)


def test_the_quickstart_block_is_the_documented_order() -> None:
    commands = [line.split()[1] for line in quickstart().splitlines() if line.startswith("aigis")]
    assert commands == [
        *("dev", "train", "export", "serve", "model", "worker", "sink", "publish", "tail"),
        *("serve", "dev"),
    ]


def test_the_readme_quickstart_ends_with_verdicts(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIGIS_")}
    env.update(
        AIGIS_STATE_DIR=str(tmp_path / "state"),
        AIGIS_DEV__PORT_OFFSET=os.environ.get("AIGIS_QUICKSTART_PORT_OFFSET", "30000"),
        # Kafka's jars and the smoke set are shared with the other stacks of this machine.
        AIGIS_CACHE_DIR=os.environ.get("AIGIS_CACHE_DIR", str(Path.home() / ".cache" / "aigis")),
        AIGIS_LOG_FORMAT="json",
        HF_HUB_OFFLINE="1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    work = tmp_path / "work"
    work.mkdir()
    started = time.monotonic()
    shell = subprocess.Popen(
        ["bash", "-e", "-c", quickstart()],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = shell.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(shell.pid, signal.SIGKILL)
        output, _ = shell.communicate()
    finally:
        _stop_what_it_left(shell.pid, work, env)
    seconds = time.monotonic() - started
    print(f"quickstart ran {seconds:.0f} s")
    assert shell.returncode == 0, f"quickstart failed ({shell.returncode}):\n{output[-6000:]}"
    assert len(VERDICT.findall(output)) == 16, output[-6000:]
    assert seconds < TIMEOUT_S


def _stop_what_it_left(group: int, work: Path, env: dict[str, str]) -> None:
    # The worker and the sink run in the block's own process group (its session).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    for command in (["serve", "stop"], ["dev", "down"]):
        subprocess.run(
            [sys.executable, "-m", "aigis.cli", *command],
            cwd=work,
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )

"""The worker and its CLI run on hosts without torch or transformers."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

_CHECK = """
import sys
import worker, worker.loop, aigis.run, worker.publish, worker.tail, worker.runtime.supervisor
import serving.client.http
from aigis.cli import app
from typer.testing import CliRunner
result = CliRunner().invoke(app, ["worker", "--help"])
assert result.exit_code == 0, result.output
heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
print(",".join(heavy))
"""


def test_worker_imports_no_model_code() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _CHECK], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "", f"the worker imported {out.stdout.strip()}"

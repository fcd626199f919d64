"""The skip report of ``aigis publish``."""

from __future__ import annotations

import pytest

from aigis.cli.stream import SKIPS_SHOWN, _skip_report
from worker.publish import Skipped

pytestmark = pytest.mark.unit


def test_the_skip_report_counts_and_names_the_first_few() -> None:
    skipped = tuple(Skipped(f"f{i}.txt", "not an image") for i in range(SKIPS_SHOWN + 2))
    lines = _skip_report(skipped, 30)
    assert lines[0] == f"skipped {SKIPS_SHOWN + 2} of 30 files (not published):"
    assert lines[1] == "  f0.txt: not an image"
    assert lines[-1] == "  and 2 more"
    assert _skip_report((), 3) == []

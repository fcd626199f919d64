"""Tables printed outside a terminal are plain text with every cell whole."""

from __future__ import annotations

import io
import sys

import pytest
from rich.table import Table

from aigis.cli.common import table_console

pytestmark = pytest.mark.unit


def test_outside_a_terminal_no_cell_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    table = Table("version", "status", "note")
    table.add_row("12", "registered", "a note " * 30)
    console = table_console()
    console.file = out
    console.print(table)
    text = out.getvalue()
    assert "registered" in text
    assert ("a note " * 30).strip() in text
    assert "\x1b[" not in text  # no colour codes in a pipe

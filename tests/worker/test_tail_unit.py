"""What ``aigis tail`` says around the records: header, idle note, shortened details."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from schemas.settings import Settings
from worker import tail as tail_module
from worker.tail import describe, idle_note, shorten, tail

pytestmark = pytest.mark.unit


def test_the_header_names_topic_brokers_and_start() -> None:
    settings = Settings()
    new_only = describe(settings, "verdicts", from_beginning=False)
    assert settings.topics.verdicts in new_only
    assert settings.kafka.bootstrap_servers in new_only
    assert "new messages only" in new_only
    assert "from the beginning" in describe(settings, "dlq", from_beginning=True)


def test_the_idle_note_says_how_many_were_read() -> None:
    assert idle_note(0) == "waiting for messages…"
    assert "3 read so far" in idle_note(3)


DETAIL = (
    "the image at https://example.com/a.png could not be fetched: the server answered 404 "
    "Not Found; check that the URI is right and publish the event again"
)


@pytest.mark.parametrize("width", range(20, len(DETAIL)))
def test_shortening_cuts_at_a_word_boundary_with_an_ellipsis(width: int) -> None:
    short = shorten(DETAIL, width)
    assert len(short) <= width
    assert short.endswith("…")
    kept = short.removesuffix("…")
    assert DETAIL.startswith(kept)
    assert DETAIL[len(kept)] in " ;,:", f"cut mid-word: {short!r}"


def test_short_text_is_kept_on_one_line() -> None:
    assert shorten("two\nlines", 40) == "two lines"
    assert shorten(DETAIL, len(DETAIL)) == DETAIL


def test_a_single_word_longer_than_the_width_is_cut_inside() -> None:
    assert shorten("x" * 50, 10) == "x" * 9 + "…"


class _Record:
    def __init__(self, offset: int) -> None:
        self.partition, self.offset, self.value = 0, offset, b"{}"


class _Consumer:
    """Scripted polls: None is an empty poll, an int a record at that offset."""

    def __init__(self, script: list[int | None]) -> None:
        self.script: Iterator[int | None] = iter(script)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def assign(self, parts: Any) -> None: ...

    def seek_to_end(self, *parts: Any) -> None: ...

    def poll(self, timeout_ms: int) -> dict[str, list[_Record]]:
        step = next(self.script, None)
        return {} if step is None else {"tp": [_Record(step)]}

    def close(self, autocommit: bool) -> None: ...


def test_idle_is_reported_once_per_dry_spell(monkeypatch: pytest.MonkeyPatch) -> None:
    script = [None, None, None, 0, 1, None, None, 2]
    monkeypatch.setattr(tail_module.kafka_clients, "consumer", lambda *a, **k: _Consumer(script))
    notes: list[int] = []
    read = list(tail(Settings(), "verdicts", count=3, on_idle=notes.append))
    assert [r.offset for r in read] == [0, 1, 2]
    assert notes == [0, 2]

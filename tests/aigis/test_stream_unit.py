"""The lines ``aigis tail`` prints and the skip report of ``aigis publish``."""

from __future__ import annotations

import base64

import pytest

from aigis.cli.stream import DETAIL_CHARS, SKIPS_SHOWN, _pretty, _skip_report
from schemas import DeadLetter, Verdict
from schemas.messages import Evidence, NearDuplicate
from worker.publish import Skipped

pytestmark = pytest.mark.unit


def verdict(**fields: object) -> Verdict:
    return Verdict(
        event_id="e1",
        image_sha256="0" * 64,
        p_ai=0.9,
        decision="ai_generated",
        generator="sdxl",
        model_name="aigis",
        model_version="1",
        **fields,
    )


def test_a_verdict_line_shows_source_and_external_id() -> None:
    line = _pretty(verdict(source="alice", external_id="cat.png"), 0, 7)
    assert "source=alice" in line
    assert "external_id=cat.png" in line


def test_a_verdict_without_them_shows_neither() -> None:
    line = _pretty(verdict(), 0, 7)
    assert "source=" not in line
    assert "external_id=" not in line


def test_a_verdict_line_says_what_besides_the_model_it_rests_on() -> None:
    signal = Evidence(kind="c2pa", value="v", generator="dalle3", strength="verified")
    assert "by provenance: c2pa" in _pretty(
        verdict(evidence=[signal], decided_by="provenance"), 0, 1
    )
    assert "evidence: c2pa" in _pretty(verdict(evidence=[signal], decided_by="model"), 0, 1)
    copy = verdict(near_duplicate_of=NearDuplicate(image_sha256="a" * 64, distance=4), cached=True)
    assert "copy of aaaaaaaaaaaa (distance 4)" in _pretty(copy, 0, 1)
    assert "evidence" not in _pretty(verdict(decided_by="model"), 0, 1)


def test_a_dead_letter_detail_is_never_cut_mid_word() -> None:
    words = [f"word{i}" for i in range(60)]
    letter = DeadLetter(
        reason="fetch_failed",
        detail=" ".join(words),
        topic="aigis.images",
        partition=0,
        offset=1,
        original_value_b64=base64.b64encode(b"{}").decode(),
    )
    line = _pretty(letter, 0, 1)
    shown = line.rsplit("  ", 1)[1]
    assert shown.endswith("…")
    assert len(shown) <= DETAIL_CHARS
    assert all(word in words for word in shown.removesuffix("…").split())


def test_the_skip_report_counts_and_names_the_first_few() -> None:
    skipped = tuple(Skipped(f"f{i}.txt", "not an image") for i in range(SKIPS_SHOWN + 2))
    lines = _skip_report(skipped, 30)
    assert lines[0] == f"skipped {SKIPS_SHOWN + 2} of 30 files (not published):"
    assert lines[1] == "  f0.txt: not an image"
    assert lines[-1] == "  and 2 more"
    assert _skip_report((), 3) == []

"""Cache keys and the stored form of a score (no Redis needed)."""

from __future__ import annotations

import pytest

from schemas.labels import GENERATORS, label_set_id
from worker.cache import cache_key, key_suffix, sha256_hex
from worker.score import Score

pytestmark = pytest.mark.unit

IMG = "ab" * 32


def test_key_holds_version_label_set_and_image_hash() -> None:
    suffix = key_suffix(IMG, "a caption", reads_caption=False)
    ct2 = cache_key("aigis:verdict", "7", GENERATORS, suffix)
    assert ct2 == f"aigis:verdict:7:{label_set_id(GENERATORS)}:{IMG}"
    # A grown, shrunk or reordered label set is another namespace, under the same version.
    grown = (*GENERATORS, "flux/1-dev")
    others = [grown, GENERATORS[:-1], (GENERATORS[0], *reversed(GENERATORS[1:]))]
    keys = {cache_key("aigis:verdict", "7", g, suffix) for g in others}
    assert len(keys) == 3
    assert ct2 not in keys


def test_caption_is_part_of_the_key_only_when_the_model_reads_it() -> None:
    with_caption = key_suffix(IMG, "a caption", reads_caption=True)
    assert with_caption == f"{IMG}:{sha256_hex(b'a caption')}"
    assert key_suffix(IMG, "another", reads_caption=True) != with_caption
    # No caption and an empty caption are different inputs.
    assert key_suffix(IMG, None, reads_caption=True) != key_suffix(IMG, "", reads_caption=True)


def test_score_round_trips_and_garbage_is_a_miss() -> None:
    score = Score(0.3, {"real": 0.6, "sdxl": 0.4}, 0.7, 0.6, "detector", "2")
    assert Score.from_json(score.to_json()) == score
    assert list(Score.from_json(score.to_json()).generator_probs) == ["real", "sdxl"]  # type: ignore[union-attr]
    assert Score.from_json(b"not json") is None
    assert Score.from_json(b'{"p_ai": 2}') is None
    bad = score.to_json().replace(b'"p_ai":0.3', b'"p_ai":7')
    assert Score.from_json(bad) is None

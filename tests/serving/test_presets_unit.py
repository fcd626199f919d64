"""The base preset without local weights names every encoder it misses."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.errors import CheckpointError
from serving.model.presets import BERT_ID, CLIP_ID, build_preset

pytestmark = pytest.mark.unit


def test_fused_names_both_missing_encoders(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as caught:
        build_preset("base", "fused", pretrained_dir=tmp_path)
    message = str(caught.value)
    assert BERT_ID in message
    assert CLIP_ID in message
    assert f"hf download {BERT_ID}" in message
    assert f"hf download {CLIP_ID}" in message


def test_only_what_is_missing_is_named(tmp_path: Path) -> None:
    clip = tmp_path / CLIP_ID.rsplit("/", 1)[-1]
    clip.mkdir()
    (clip / "config.json").write_text("{}")
    with pytest.raises(CheckpointError) as caught:
        build_preset("base", "fused", pretrained_dir=tmp_path)
    assert BERT_ID in str(caught.value)
    assert CLIP_ID not in str(caught.value)


@pytest.mark.parametrize("architecture", ["clip-linear", "clip-contrastive"])
def test_clip_only_architectures_name_clip_only(tmp_path: Path, architecture: str) -> None:
    with pytest.raises(CheckpointError) as caught:
        build_preset("base", architecture, pretrained_dir=tmp_path)
    assert CLIP_ID in str(caught.value)
    assert BERT_ID not in str(caught.value)

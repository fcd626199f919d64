"""The base preset loads its encoders the Hugging Face way (a directory, the cache, or a download
unless HF_HUB_OFFLINE=1) and, when it cannot, names every encoder it misses."""

from __future__ import annotations

import os
import subprocess
import sys
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


def test_offline_and_not_cached_names_both_encoders_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CheckpointError) as caught:
        build_preset("base", "fused")
    message = str(caught.value)
    assert BERT_ID in message
    assert CLIP_ID in message
    assert "HF_HUB_OFFLINE=1 or local_files_only forbids a download" in message


def test_online_the_encoders_are_downloaded_from_the_hub(tmp_path: Path) -> None:
    """Without HF_HUB_OFFLINE the base preset asks the hub (here an endpoint where nothing
    listens, so the download fails) and says which encoders it could not get."""
    script = (
        "from serving.errors import CheckpointError\n"
        "from serving.model.presets import build_preset\n"
        "try:\n"
        "    build_preset('base', 'fused')\n"
        "except CheckpointError as exc:\n"
        "    print(exc)\n"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "HF_HUB_ETAG_TIMEOUT": "2",
        "HF_HUB_DOWNLOAD_TIMEOUT": "2",
    }
    env.pop("AIGIS_PRETRAINED_DIR", None)
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loading failed" in result.stdout
    assert BERT_ID in result.stdout
    assert CLIP_ID in result.stdout

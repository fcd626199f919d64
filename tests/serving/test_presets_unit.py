"""The base preset loads its encoders the Hugging Face way (a directory, the cache, or a download
unless HF_HUB_OFFLINE=1) and, when it cannot, names every encoder it misses."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from transformers import (
    Dinov2Config,
    Dinov2Model,
    SiglipConfig,
    SiglipImageProcessorPil,
    SiglipModel,
)

from serving.errors import CheckpointError
from serving.model.presets import BERT_ID, CLIP_ID, Backbones, build_preset

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


class _EmptyHub(BaseHTTPRequestHandler):
    """A hub that has no repository: every request is answered 404 at once and recorded."""

    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.asked.append(self.path)
        self.send_response(404)
        self.send_header("X-Error-Code", "RepositoryNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:
        self.do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_online_the_encoders_are_downloaded_from_the_hub(tmp_path: Path) -> None:
    """Without HF_HUB_OFFLINE the base preset asks the hub (here a local one that has nothing)
    and says which encoders it could not get."""
    script = (
        "from serving.errors import CheckpointError\n"
        "from serving.model.presets import build_preset\n"
        "try:\n"
        "    build_preset('base', 'fused')\n"
        "except CheckpointError as exc:\n"
        "    print(exc)\n"
    )
    _EmptyHub.asked.clear()
    hub = ThreadingHTTPServer(("127.0.0.1", 0), _EmptyHub)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_ENDPOINT": f"http://127.0.0.1:{hub.server_address[1]}",
        "HF_HUB_CACHE": str(tmp_path / "hub"),
    }
    for name in ("AIGIS_PRETRAINED_DIR", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(name, None)  # a proxy would take the request past the local hub
    try:
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        hub.shutdown()
        hub.server_close()
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loading failed" in result.stdout
    assert BERT_ID in result.stdout
    assert CLIP_ID in result.stdout
    assert any(CLIP_ID in path for path in _EmptyHub.asked), _EmptyHub.asked


def test_named_backbone_offline_is_named_with_how_to_get_it(tmp_path: Path) -> None:
    """HF_HUB_OFFLINE=1 in the environment, as a user sets it: a named backbone that is not
    cached is refused before anything is built, with the command that fetches it."""
    script = (
        "from serving.errors import CheckpointError\n"
        "from serving.model.presets import Backbones, build_preset\n"
        "try:\n"
        "    build_preset('base', 'clip-linear', backbones=Backbones('facebook/dinov2-small'))\n"
        "except CheckpointError as exc:\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    env.pop("AIGIS_PRETRAINED_DIR", None)
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "hf download facebook/dinov2-small" in result.stdout
    assert "HF_HUB_OFFLINE=1 or local_files_only forbids a download" in result.stdout
    assert CLIP_ID not in result.stdout


def test_local_files_only_never_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("AIGIS_PRETRAINED_DIR", raising=False)
    with pytest.raises(CheckpointError, match="local_files_only forbids a download"):
        build_preset("base", "fused", backbones=Backbones(local_files_only=True))


def test_a_dual_encoder_directory_gives_its_vision_tower_and_preprocessing(tmp_path: Path) -> None:
    """A SigLIP model saved as the hub lays it out: the vision tower is taken, and the image
    size, mean and std come from its image processor."""
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1}
    siglip = SiglipModel(
        SiglipConfig(
            text_config={**small, "num_attention_heads": 2},
            vision_config={**small, "num_attention_heads": 2, "image_size": 64, "patch_size": 16},
        )
    )
    siglip.save_pretrained(tmp_path / "siglip")
    SiglipImageProcessorPil(size={"height": 64, "width": 64}).save_pretrained(tmp_path / "siglip")
    dinov2 = Dinov2Model(Dinov2Config(**small, num_attention_heads=2, image_size=64, patch_size=16))
    dinov2.save_pretrained(tmp_path / "dinov2")  # no image processor: the family's constants

    built = build_preset("base", "clip-linear", backbones=Backbones(str(tmp_path / "siglip")))
    assert built.config.vision_config["model_type"] == "siglip_vision_model"
    assert built.config.preprocess.image_size == 64
    assert built.config.preprocess.image_mean == (0.5, 0.5, 0.5)
    loaded = built.model.vision.state_dict()
    saved = siglip.vision_model.state_dict()
    assert len(loaded) == len(saved)
    for name, weight in saved.items():
        (match,) = [key for key in loaded if key.endswith(name)]
        assert torch.equal(loaded[match], weight), name

    built = build_preset("base", "clip-linear", backbones=Backbones(str(tmp_path / "dinov2")))
    assert built.config.vision_config["model_type"] == "dinov2"
    assert built.config.preprocess.image_mean == (0.485, 0.456, 0.406)
    assert built.config.sources == {"vision": str(tmp_path / "dinov2")}
    with torch.no_grad():
        pixels = torch.zeros(1, 3, 64, 64)
        assert built.model.eval()(pixel_values=pixels).logits_a.shape == (1,)

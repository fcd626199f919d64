"""Backbones as configuration: tiny members of several vision families are built offline, trained
a few steps, saved, loaded (by the project's loader and by AutoModel) and scored; a linear probe
trains the heads only."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModel
from typer.testing import CliRunner

from aigis.cli import app
from serving.model.backbones import IMAGENET_MEAN, TINY_VISION_FAMILIES
from serving.model.checkpoint import load_checkpoint, save_checkpoint
from serving.model.detector import Detector
from serving.model.predictor import Predictor
from serving.model.presets import Backbones, build_preset
from training import trainer as trainer_module
from training.data import Sample, generators_of, load_split
from training.trainer import TrainingError, TrainRequest, train

MODEL_TYPES = {
    "clip": "clip_vision_model",
    "siglip": "siglip_vision_model",
    "dinov2": "dinov2",
    "vit": "vit",
}
IMAGES = [Image.new("RGB", (90, 70), (120, 200, 30)), Image.new("RGB", (64, 64), (5, 5, 5))]


@pytest.fixture
def small_smoke(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer reads a slice of smoke, so each run takes seconds."""
    sizes = {"train": 16, "validation": 8}

    def sliced(spec: str, split: str) -> Sequence[Sample]:
        return list(load_split(spec, split))[: sizes[split]]

    monkeypatch.setattr(trainer_module, "load_split", sliced)


def _train(output: Path, **options: object) -> None:
    request = TrainRequest(
        data="smoke",
        output=output,
        preset="tiny",
        batch_size=8,
        epochs=1,
        max_steps=2,
        progress=False,
        **options,  # type: ignore[arg-type]
    )
    train(request)


@pytest.mark.slow
@pytest.mark.usefixtures("small_smoke")
@pytest.mark.parametrize(
    ("family", "architecture"),
    [("siglip", "clip-linear"), ("dinov2", "fused"), ("vit", "clip-linear")],
)
def test_each_vision_family_trains_saves_loads_and_scores(
    family: str, architecture: str, tmp_path: Path
) -> None:
    _train(tmp_path, architecture=architecture, vision_backbone=family)
    loaded = load_checkpoint(tmp_path)
    assert loaded.config.vision_config["model_type"] == MODEL_TYPES[family]
    summary = json.loads((tmp_path / "training.json").read_text())
    assert summary["backbones"]["vision"] == MODEL_TYPES[family]
    assert (tmp_path / "README.md").is_file()  # the card is saved with the checkpoint

    auto = AutoModel.from_pretrained(tmp_path)
    assert isinstance(auto, Detector)
    inputs = loaded.preprocessor(IMAGES, ["a field", None])
    with torch.no_grad():
        expected = loaded.model(**inputs).logits_b
        torch.testing.assert_close(auto.eval()(**inputs).logits_b, expected)
    predictions = Predictor.from_checkpoint(tmp_path, device="cpu").predict(IMAGES, ["x", None])
    assert [0.0 <= p.p_ai <= 1.0 for p in predictions] == [True, True]


@pytest.mark.unit
@pytest.mark.parametrize("family", TINY_VISION_FAMILIES)
def test_tiny_families_take_their_own_normalisation(family: str) -> None:
    built = build_preset("tiny", "clip-linear", backbones=Backbones(vision=family))
    assert built.config.vision_config["model_type"] == MODEL_TYPES[family]
    mean = built.config.preprocess.image_mean
    assert (mean == IMAGENET_MEAN) == (family == "dinov2")
    assert list(built.image_processor.image_mean) == list(mean)
    with torch.no_grad():
        out = built.model.eval()(**built.preprocessor(IMAGES, [None, None]))
    assert out.logits_b.shape == (2, len(built.config.generators))


@pytest.mark.slow
@pytest.mark.usefixtures("small_smoke")
def test_linear_probe_trains_the_heads_only(tmp_path: Path) -> None:
    start = build_preset("tiny", "fused", generators=generators_of("smoke"))
    save_checkpoint(
        start.model, start.tokenizer, start.image_processor, start.config, tmp_path / "start"
    )
    output = tmp_path / "probe"
    _train(output, init_from=tmp_path / "start", linear_probe=True, learning_rate=1e-2)
    before = start.model.state_dict()
    after = load_file(output / "model.safetensors")
    encoders = [k for k in after if k.startswith(("text.", "vision."))]
    heads = [k for k in after if k.startswith(("fuse.", "head_a.", "head_b."))]
    assert encoders
    assert all(torch.equal(after[k], before[k]) for k in encoders)
    assert any(not torch.equal(after[k], before[k]) for k in heads)
    assert json.loads((output / "training.json").read_text())["linear_probe"] is True


@pytest.mark.unit
def test_frozen_backbones_stay_in_eval_mode() -> None:
    model = build_preset("tiny", "fused").model
    model.freeze_backbones()
    model.train()
    assert model.training
    assert model.head_a.training
    assert not model.vision.training
    assert not model.text.training
    assert not any(p.requires_grad for p in model.vision.parameters())
    assert all(p.requires_grad for p in model.head_b.parameters())
    model.unfreeze()
    model.train()
    assert model.vision.training


@pytest.mark.slow
@pytest.mark.usefixtures("small_smoke")
def test_backbones_a_preset_cannot_use_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="clip, siglip, dinov2, vit"):
        build_preset("tiny", "fused", backbones=Backbones(vision="resnet"))
    with pytest.raises(ValueError, match="CLIP vision encoder"):
        build_preset("tiny", "clip-contrastive", backbones=Backbones(vision="dinov2"))
    with pytest.raises(ValueError, match="base-random"):
        build_preset("base-random", "fused", backbones=Backbones(vision="siglip"))
    with pytest.raises(TrainingError, match="no heads"):
        _train(tmp_path, architecture="clip-contrastive", linear_probe=True)
    result = CliRunner().invoke(
        app, ["train", "--data", "smoke", "-o", str(tmp_path), "--vision-backbone", "resnet"]
    )
    assert result.exit_code == 1
    assert "unknown tiny vision backbone 'resnet'" in result.output

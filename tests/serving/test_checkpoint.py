"""Checkpoint directories: identical outputs after a round trip, clear errors for bad ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import BertConfig, BertModel, CLIPConfig, CLIPModel

from serving.errors import CheckpointError
from serving.model.checkpoint import load_checkpoint, save_checkpoint
from serving.model.config import DetectorConfig
from serving.model.presets import build_preset, config_dict
from serving.model.vocab import generated_tokenizer

pytestmark = pytest.mark.unit

IMAGES = [Image.new("RGB", (80, 60), (200, 30, 30)), Image.new("RGB", (60, 90), (10, 10, 240))]
CAPTIONS = ["a red square", None]


def _outputs(checkpoint_model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        out = checkpoint_model.eval()(**inputs)
    return torch.cat([out.logits_a[:, None], out.logits_b], dim=1)


@pytest.mark.parametrize("architecture", ["fused", "clip-linear", "clip-contrastive"])
def test_round_trip_gives_identical_outputs(architecture: str, tmp_path: Path) -> None:
    built = build_preset("tiny", architecture, name="roundtrip", version="7")
    config = built.config.model_copy(update={"temperature": 1.7})
    save_checkpoint(built.model, built.tokenizer, built.image_processor, config, tmp_path)
    loaded = load_checkpoint(tmp_path)
    assert loaded.config == config
    assert not loaded.model.training
    before = _outputs(built.model, built.preprocessor(IMAGES, CAPTIONS))
    after = _outputs(loaded.model, loaded.preprocessor(IMAGES, CAPTIONS))
    assert torch.equal(before, after)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = build_preset("tiny", "fused")
    directory = tmp_path_factory.mktemp("checkpoint")
    save_checkpoint(built.model, built.tokenizer, built.image_processor, built.config, directory)
    return directory


def _copy_without(source: Path, target: Path, missing: str) -> Path:
    target.mkdir()
    for item in source.iterdir():
        if item.name != missing:
            (target / item.name).write_bytes(item.read_bytes())
    return target


@pytest.mark.parametrize(
    "missing",
    [
        "config.json",
        "model.safetensors",
        "tokenizer_config.json",
        "tokenizer.json",
        "preprocessor_config.json",
    ],
)
def test_missing_file_is_named(saved: Path, tmp_path: Path, missing: str) -> None:
    broken = _copy_without(saved, tmp_path / "broken", missing)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(broken)
    message = str(caught.value)
    assert missing in message or "vocabulary" in message
    assert "aigis train" in message or "copy" in message


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")


def test_weights_of_another_architecture_are_refused(saved: Path, tmp_path: Path) -> None:
    other = build_preset("tiny", "clip-linear")
    broken = _copy_without(saved, tmp_path / "mixed", "model.safetensors")
    save_checkpoint(other.model, other.tokenizer, other.image_processor, other.config, tmp_path)
    (broken / "model.safetensors").write_bytes((tmp_path / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=r"does not match config\.json"):
        load_checkpoint(broken)


def test_corrupt_weights_and_config_are_refused(saved: Path, tmp_path: Path) -> None:
    broken = _copy_without(saved, tmp_path / "corrupt", "model.safetensors")
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(broken)
    (broken / "config.json").write_text('{"architecture": "transformer-xl"}')
    with pytest.raises(CheckpointError, match="not a valid detector config"):
        load_checkpoint(broken)


def test_unexpected_tokenizer_class_is_refused(saved: Path, tmp_path: Path) -> None:
    broken = _copy_without(saved, tmp_path / "tok", "tokenizer_config.json")
    settings = json.loads((saved / "tokenizer_config.json").read_text())
    settings["tokenizer_class"] = "SomeRemoteCodeTokenizer"
    (broken / "tokenizer_config.json").write_text(json.dumps(settings))
    with pytest.raises(CheckpointError, match="tokenizer class"):
        load_checkpoint(broken)


def test_base_preset_without_weights_says_how_to_supply_them(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as caught:
        build_preset("base", "fused", pretrained_dir=tmp_path)
    message = str(caught.value)
    assert "bert-base-uncased" in message or "clip-vit-base-patch32" in message
    assert "--pretrained" in message
    assert "AIGIS_PRETRAINED_DIR" in message


def test_base_preset_loads_local_encoders(tmp_path: Path) -> None:
    """The base code path, fed small encoders saved the way a Hugging Face download is laid out."""
    tokenizer = generated_tokenizer(None, 32)
    bert = BertModel(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        ),
        add_pooling_layer=False,
    )
    bert.save_pretrained(tmp_path / "bert-base-uncased")
    tokenizer.save_pretrained(tmp_path / "bert-base-uncased")
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1}
    clip = CLIPModel(
        CLIPConfig(
            text_config={**small, "num_attention_heads": 2},
            vision_config={**small, "num_attention_heads": 2, "image_size": 64, "patch_size": 32},
            projection_dim=16,
        )
    )
    clip.save_pretrained(tmp_path / "clip-vit-base-patch32")

    built = build_preset("base", "fused", pretrained_dir=tmp_path)
    assert built.config.sources == {"text": "bert-base-uncased", "vision": CLIP_ID}
    assert torch.equal(
        built.model.text.embeddings.word_embeddings.weight, bert.embeddings.word_embeddings.weight
    )
    vision_weight = clip.vision_model.embeddings.patch_embedding.weight
    assert torch.equal(built.model.vision.embeddings.patch_embedding.weight, vision_weight)
    assert (
        built.config.vision_config["hidden_size"]
        == config_dict(clip.config.vision_config)["hidden_size"]
    )
    linear = build_preset("base", "clip-linear", pretrained_dir=tmp_path)
    assert isinstance(linear.config, DetectorConfig)
    assert linear.config.text_config is None


CLIP_ID = "openai/clip-vit-base-patch32"

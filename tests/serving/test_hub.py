"""Hub-native checkpoints: AutoConfig / AutoModel load every architecture, format 1 checkpoints
still load (and upgrade), and a config.json that is not a detector is refused with a reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel

from serving.errors import CheckpointError
from serving.model.checkpoint import load_checkpoint, save_checkpoint, upgrade_checkpoint
from serving.model.config import FORMAT_VERSION, DetectorConfig
from serving.model.detector import Detector
from serving.model.hub import DetectorHubConfig, hub_config
from serving.model.presets import build_preset
from tests.serving.test_checkpoint import CAPTIONS, IMAGES
from tests.serving.test_checkpoint import _outputs as _logits

pytestmark = pytest.mark.unit

ARCHITECTURES = ["fused", "clip-linear", "clip-contrastive"]
FORMAT1 = Path(__file__).parent / "data" / "format1"


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_auto_model_round_trip(architecture: str, tmp_path: Path) -> None:
    built = build_preset("tiny", architecture, name="hub", version="4")
    config = built.config.model_copy(update={"temperature": 1.3, "ai_threshold": 0.7})
    save_checkpoint(built.model, built.tokenizer, built.image_processor, config, tmp_path)

    auto_config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(auto_config, DetectorHubConfig)
    assert auto_config.model_type == f"aigis-{architecture}"
    assert auto_config.detector() == config  # temperature survives transformers' own handling
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, Detector)
    assert loaded.detector_config == config
    inputs = built.preprocessor(IMAGES, CAPTIONS)
    torch.testing.assert_close(_logits(loaded, inputs), _logits(built.model, inputs))

    # save_pretrained writes the same config.json, which the project's loader reads.
    again = tmp_path / "again"
    loaded.save_pretrained(again)
    for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        shutil.copy(tmp_path / name, again / name)
    assert load_checkpoint(again).config == config


def test_auto_model_refuses_weights_that_do_not_match_rather_than_draw_them(
    tmp_path: Path,
) -> None:
    """transformers would initialise a missing head at random and only warn."""
    built = build_preset("tiny", "fused", name="hub", version="4")
    save_checkpoint(built.model, built.tokenizer, built.image_processor, built.config, tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    headless = {k: v for k, v in weights.items() if not k.startswith("head_b.")}
    save_file(headless, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"missing \['head_b\.bias', 'head_b\.weight'\]"):
        AutoModel.from_pretrained(tmp_path)
    save_file({**weights, "extra.weight": torch.zeros(1)}, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"unexpected \['extra\.weight'\]"):
        AutoModel.from_pretrained(tmp_path)


def test_hub_config_validates_the_detector_fields() -> None:
    config = build_preset("tiny", "clip-linear").config
    values = hub_config(config).to_diff_dict()
    values.update(ai_threshold=0.1, human_threshold=0.2)
    with pytest.raises(StrictDataclassClassValidationError, match="human_threshold must be below"):
        AutoConfig.for_model(**values)


def _format1_checkpoint(architecture: str, target: Path) -> Path:
    """A checkpoint as format 1 wrote it: its config.json verbatim (kept in tests/serving/data
    from a format 1 run) and weights without the prompt buffers format 1 did not save."""
    built = build_preset("tiny", architecture)
    save_checkpoint(built.model, built.tokenizer, built.image_processor, built.config, target)
    shutil.copy(FORMAT1 / architecture / "config.json", target / "config.json")
    weights = load_file(target / "model.safetensors")
    kept = {k: v for k, v in weights.items() if k not in {"prompt_ids", "prompt_mask"}}
    save_file(kept, target / "model.safetensors", metadata={"format": "pt"})
    return target


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_format1_checkpoints_load_and_upgrade(architecture: str, tmp_path: Path) -> None:
    old = _format1_checkpoint(architecture, tmp_path / "old")
    assert json.loads((old / "config.json").read_text())["format_version"] == 1
    loaded = load_checkpoint(old)
    assert loaded.config.format_version == FORMAT_VERSION
    assert loaded.config.vision_config["model_type"] == "clip_vision_model"
    inputs = loaded.preprocessor(IMAGES, CAPTIONS)
    before = _logits(loaded.model, inputs)

    (old / "README.md").write_text("# card\n")
    upgrade_checkpoint(old)
    written = json.loads((old / "config.json").read_text())
    assert (written["format_version"], written["model_type"]) == (2, f"aigis-{architecture}")
    assert (old / "README.md").read_text() == "# card\n"  # the card stays
    torch.testing.assert_close(_logits(AutoModel.from_pretrained(old), inputs), before)
    assert torch.equal(_logits(load_checkpoint(old).model, inputs), before)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"vision_config": {"model_type": 7}}, "model_type"),
        ({"vision_config": {"model_type": "no-such-backbone"}}, "no-such-backbone"),
        ({"model_type": "aigis-fused", "architecture": "clip-linear"}, "does not match"),
        ({"temperature": -1}, "temperature"),
        ({"prompt_token_ids": [[1, 2]]}, "prompt_token_ids"),
        ({"format_version": 3}, "format_version"),
    ],
)
def test_hostile_configs_are_refused(
    change: dict[str, object], reason: str, tmp_path: Path
) -> None:
    built = build_preset("tiny", "clip-linear")
    save_checkpoint(built.model, built.tokenizer, built.image_processor, built.config, tmp_path)
    values = json.loads((tmp_path / "config.json").read_text())
    values.update(change)
    (tmp_path / "config.json").write_text(json.dumps(values))
    with pytest.raises(CheckpointError, match=reason):
        load_checkpoint(tmp_path)


def test_detector_config_still_forbids_unknown_fields() -> None:
    values = build_preset("tiny", "clip-linear").config.model_dump(mode="json")
    with pytest.raises(ValueError, match="extra"):
        DetectorConfig.from_json_dict({**values, "thresholds": 0.5})

"""Growing a detector's label set keeps every trained weight and the old classes' answers."""

from __future__ import annotations

import pytest
import torch

from schemas.labels import GENERATORS
from serving.errors import CheckpointError
from serving.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from serving.model.config import ARCHITECTURES
from serving.model.grow import grow_generators
from serving.model.presets import build_preset

pytestmark = pytest.mark.unit

GROWN = (*GENERATORS, "flux/1-dev", "openai/gpt-image-1")


def batch(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    side = checkpoint.config.preprocess.image_size
    inputs = {"pixel_values": torch.randn(4, 3, side, side)}
    if checkpoint.config.reads_caption:
        encoded = checkpoint.tokenizer(["a cat", "", "a red car", "the moon"], padding=True)
        inputs["input_ids"] = torch.tensor(encoded["input_ids"])
        inputs["attention_mask"] = torch.tensor(encoded["attention_mask"])
    return inputs


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_a_grown_model_answers_the_old_classes_as_before(architecture: str) -> None:
    torch.manual_seed(0)
    old = build_preset("tiny", architecture, name="det")  # type: ignore[arg-type]
    old.model.eval()
    grown = grow_generators(old, GROWN)
    grown.model.eval()
    assert grown.config.generators == GROWN
    assert grown.model.n_generators == len(GROWN)
    with torch.no_grad():
        before = old.model(**batch(old))
        after = grown.model(**batch(old))
    torch.testing.assert_close(after.logits_a, before.logits_a)
    torch.testing.assert_close(after.logits_b[:, : len(GENERATORS)], before.logits_b)
    if architecture != "clip-contrastive":
        # A new row starts as the mean of the old generators' rows: never above the best of
        # them, so the generator the old model named is still named.
        new = after.logits_b[:, len(GENERATORS) :]
        best_old = before.logits_b[:, 1:].max(dim=1).values
        assert bool((new <= best_old[:, None] + 1e-5).all())
        torch.testing.assert_close(new[:, 0], before.logits_b[:, 1:].mean(dim=1))


def test_a_grown_checkpoint_saves_and_loads_with_its_new_classes(tmp_path: object) -> None:
    from pathlib import Path

    grown = grow_generators(build_preset("tiny", "fused", name="det"), GROWN)
    path = Path(str(tmp_path))
    save_checkpoint(grown.model, grown.tokenizer, grown.image_processor, grown.config, path)
    loaded = load_checkpoint(path)
    assert loaded.config.generators == GROWN
    torch.testing.assert_close(
        loaded.model.state_dict()["head_b.weight"], grown.model.state_dict()["head_b.weight"]
    )


@pytest.mark.parametrize(
    "generators",
    [
        GENERATORS,  # nothing new
        GENERATORS[:-1],  # a class dropped
        ("real", "sdxl", "sd21", "sd3", "dalle3", "midjourney6", "flux/1-dev"),  # reordered
        (*GENERATORS, "sdxl"),  # a duplicate
        (*GENERATORS, "Not A Name"),
    ],
)
def test_only_appending_new_generators_is_a_growth(generators: tuple[str, ...]) -> None:
    with pytest.raises((CheckpointError, ValueError)):
        grow_generators(build_preset("tiny", "clip-linear", name="det"), generators)

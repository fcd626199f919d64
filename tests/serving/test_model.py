"""The detector family: the loss against a hand computation, shapes, captions, freezing."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from serving.model.checkpoint import Checkpoint
from serving.model.detector import ClipContrastiveDetector, detector_loss
from serving.model.presets import build_preset

pytestmark = pytest.mark.unit

ARCHITECTURES = ("fused", "clip-linear", "clip-contrastive")


def _log_softmax(logits: list[float], index: int) -> float:
    return logits[index] - math.log(sum(math.exp(v) for v in logits))


def _bce(logit: float, label: int) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(label * math.log(p) + (1 - label) * math.log(1 - p))


def test_loss_masks_task_b_to_ai_items() -> None:
    logits_a = [0.5, -1.0, 2.0, 0.0]
    labels_a = [0, 1, 1, 0]
    logits_b = [[3.0, 0.0, 0.0], [0.0, 1.0, 2.0], [0.5, 0.5, -1.0], [0.0, 0.0, 9.0]]
    labels_b = [0, 2, 1, 0]
    bce = sum(_bce(z, y) for z, y in zip(logits_a, labels_a, strict=True)) / 4
    # Only items 1 and 2 are AI: items 0 and 3 (one of them badly wrong) must not count.
    cross_entropy = -(_log_softmax(logits_b[1], 2) + _log_softmax(logits_b[2], 1)) / 2
    got = detector_loss(
        torch.tensor(logits_a),
        torch.tensor(logits_b),
        torch.tensor(labels_a),
        torch.tensor(labels_b),
    )
    assert got.item() == pytest.approx(bce + cross_entropy, rel=1e-6)


def test_loss_has_no_task_b_term_without_ai_items() -> None:
    logits_a = torch.tensor([0.3, -0.7], requires_grad=True)
    logits_b = torch.tensor([[5.0, -5.0], [-5.0, 5.0]], requires_grad=True)
    labels_a = torch.tensor([0, 0])
    got = detector_loss(logits_a, logits_b, labels_a, torch.tensor([0, 0]))
    assert got.item() == pytest.approx((_bce(0.3, 0) + _bce(-0.7, 0)) / 2, rel=1e-6)
    got.backward()
    assert logits_b.grad is not None
    assert torch.equal(logits_b.grad, torch.zeros_like(logits_b))


@pytest.fixture(scope="module", params=ARCHITECTURES)
def tiny(request: pytest.FixtureRequest) -> Checkpoint:
    return build_preset("tiny", request.param)


def _batch(tiny: Checkpoint, captions: list[str | None]) -> dict[str, torch.Tensor]:
    images = [Image.new("RGB", (64 + 16 * i, 48), (40 * i, 90, 200)) for i in range(len(captions))]
    return tiny.preprocessor(images, captions)


def test_forward_gives_one_logit_a_and_one_logit_per_generator(tiny: Checkpoint) -> None:
    captions = ["a cat on a mat", None, "", "a very long caption " * 40]
    with torch.no_grad():
        out = tiny.model.eval()(**_batch(tiny, captions))
    assert out.loss is None
    assert out.logits_a.shape == (4,)
    assert out.logits_b.shape == (4, len(tiny.config.generators))
    assert torch.isfinite(out.logits_a).all()
    assert torch.isfinite(out.logits_b).all()


def test_every_trainable_parameter_gets_a_gradient(tiny: Checkpoint) -> None:
    # What lets DistributedDataParallel run without find_unused_parameters.
    model = tiny.model.train()
    batch = _batch(tiny, ["a dog", None, "two birds"])
    model.zero_grad()
    out = model(**batch, labels_a=torch.tensor([1, 0, 1]), labels_b=torch.tensor([2, 0, 5]))
    assert out.loss is not None
    out.loss.backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    model.eval()


def test_missing_caption_is_the_empty_caption() -> None:
    fused = build_preset("tiny", "fused")
    fused.model.eval()
    image = [Image.new("RGB", (50, 50), (10, 200, 30))]
    with torch.no_grad():
        none = fused.model(**fused.preprocessor(image, [None])).logits_a
        empty = fused.model(**fused.preprocessor(image, [""])).logits_a
        text = fused.model(**fused.preprocessor(image, ["a photo of a cat"])).logits_a
    assert torch.equal(none, empty)
    assert not torch.equal(none, text)


def test_image_only_architectures_ignore_the_caption() -> None:
    for architecture in ("clip-linear", "clip-contrastive"):
        tiny = build_preset("tiny", architecture)
        assert not tiny.config.reads_caption
        batch = tiny.preprocessor([Image.new("RGB", (40, 40))], ["a caption"])
        assert set(batch) == {"pixel_values"}


def test_encoders_return_one_vector_per_item(tiny: Checkpoint) -> None:
    batch = _batch(tiny, ["one", "two words"])
    with torch.no_grad():
        image = tiny.model.encode_image(batch["pixel_values"])
        assert image.shape[0] == 2
        assert image.ndim == 2
        if tiny.config.architecture == "fused":
            text = tiny.model.encode_text(batch["input_ids"], batch["attention_mask"])
            assert text.shape == (2, tiny.config.text_config["hidden_size"])


def test_contrastive_logits_are_prompt_similarities_over_temperature() -> None:
    tiny = build_preset("tiny", "clip-contrastive")
    model = tiny.model.eval()
    assert isinstance(model, ClipContrastiveDetector)
    pixel_values = _batch(tiny, [None, None])["pixel_values"]
    with torch.no_grad():
        out = model(pixel_values)
        images = model.encode_image(pixel_values)
        prompts = model.encode_text(model.prompt_ids, model.prompt_mask)
    similarity = images @ prompts.T / 0.07
    assert torch.allclose(out.logits_a, similarity[:, 1] - similarity[:, 0], atol=1e-5)
    assert torch.allclose(out.logits_b, similarity[:, 2:], atol=1e-5)
    assert torch.allclose(images.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_freeze_helpers(tiny: Checkpoint) -> None:
    model = tiny.model

    def trainable(prefix: str) -> set[bool]:
        return {p.requires_grad for n, p in model.named_parameters() if n.startswith(prefix)}

    vision_prefix = (
        "clip.vision_model" if tiny.config.architecture == "clip-contrastive" else "vision"
    )
    model.freeze_vision()
    assert trainable(vision_prefix) == {False}
    assert trainable("head_a" if tiny.config.architecture != "clip-contrastive" else "clip.text")
    if tiny.config.architecture == "fused":
        model.freeze_text()
        assert trainable("text") == {False}
        assert trainable("fuse") == {True}
    model.unfreeze()
    assert trainable(vision_prefix) == {True}
    if tiny.config.architecture == "clip-contrastive":
        assert not model.clip.logit_scale.requires_grad  # the temperature stays fixed

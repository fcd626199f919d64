"""The predictor: batching, precisions, and how probabilities become decisions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serving.client.prediction import Prediction, read_scores
from serving.model.checkpoint import save_checkpoint
from serving.model.predictor import Predictor
from serving.model.presets import build_preset

pytestmark = pytest.mark.unit

IMAGES = [Image.new("RGB", (40 + 10 * i, 50), (30 * i, 120, 200 - 20 * i)) for i in range(7)]
CAPTIONS: list[str | None] = ["a cat", None, "", "two dogs on a beach", "x", None, "a red car"]


@pytest.fixture(scope="module")
def untrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = build_preset("tiny", "fused", name="tiny-test", version="3")
    directory = tmp_path_factory.mktemp("untrained")
    save_checkpoint(built.model, built.tokenizer, built.image_processor, built.config, directory)
    return directory


def _check(prediction: Prediction, predictor: Predictor) -> None:
    assert 0.0 <= prediction.p_ai <= 1.0
    assert set(prediction.generator_probs) == set(predictor.generators)
    assert math.isclose(sum(prediction.generator_probs.values()), 1.0, abs_tol=1e-5)
    assert prediction.confidence_a == pytest.approx(max(prediction.p_ai, 1 - prediction.p_ai))
    assert prediction.confidence_b == pytest.approx(max(prediction.generator_probs.values()))
    assert prediction.generator_probs["real"] == pytest.approx(1 - prediction.p_ai)
    assert prediction.decision in {"ai_generated", "human", "needs_review"}
    if prediction.decision == "human":
        assert prediction.generator == "real"
    else:
        assert prediction.generator in {*predictor.generators[1:], "unknown"}


def test_metadata_comes_from_the_checkpoint(untrained: Path) -> None:
    predictor = Predictor.from_checkpoint(untrained)
    assert (predictor.name, predictor.version, predictor.architecture) == (
        "tiny-test",
        "3",
        "fused",
    )
    assert predictor.generators[0] == "real"
    assert len(predictor.generators) == 6
    assert predictor.reads_caption
    assert predictor.device.type in {"cpu", "cuda"}


def test_batches_split_at_max_batch_without_changing_results(untrained: Path) -> None:
    whole = Predictor.from_checkpoint(untrained, device="cpu", max_batch=32)
    split = Predictor.from_checkpoint(untrained, device="cpu", max_batch=3)
    one = whole.predict(IMAGES, CAPTIONS)
    many = split.predict(IMAGES, CAPTIONS)
    assert len(one) == len(many) == len(IMAGES)
    for a, b in zip(one, many, strict=True):
        _check(a, whole)
        assert a.p_ai == pytest.approx(b.p_ai, abs=1e-5)


def test_prepared_images_and_passes_of_any_size_score_as_fresh_ones(untrained: Path) -> None:
    """The predictor keeps its input rows between passes: a smaller pass after a larger one
    must not read the larger one's rows, and crops made by ``prepare`` score as the images."""
    fresh = [
        p.p_ai
        for p in Predictor.from_checkpoint(untrained, device="cpu").predict(
            IMAGES[:2], CAPTIONS[:2]
        )
    ]
    predictor = Predictor.from_checkpoint(untrained, device="cpu", max_batch=4)
    predictor.predict(IMAGES, CAPTIONS)  # fills every kept row, then a pass of 3
    prepared = [predictor.prepare(image) for image in IMAGES[:2]]
    again = [p.p_ai for p in predictor.predict(prepared, CAPTIONS[:2])]
    assert again == pytest.approx(fresh, abs=1e-6)


def test_empty_and_mismatched_inputs(untrained: Path) -> None:
    predictor = Predictor.from_checkpoint(untrained, device="cpu")
    assert predictor.predict([], []) == []
    with pytest.raises(ValueError, match="captions"):
        predictor.predict(IMAGES[:2], ["one"])


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precisions_stay_close_to_fp32(untrained: Path, precision: str) -> None:
    reference = Predictor.from_checkpoint(untrained, device="cpu", precision="fp32")
    reduced = Predictor.from_checkpoint(untrained, device="cpu", precision=precision)
    expected = reference.scores(IMAGES, CAPTIONS).p_ai
    got = reduced.scores(IMAGES, CAPTIONS).p_ai
    assert np.abs(expected - got).max() < 0.05


def test_bad_options_are_refused(untrained: Path) -> None:
    with pytest.raises(ValueError, match="precision"):
        Predictor.from_checkpoint(untrained, precision="fp8")
    with pytest.raises(ValueError, match="max_batch"):
        Predictor.from_checkpoint(untrained, max_batch=0)


def _with_config(tmp_path: Path, **update: object) -> Predictor:
    built = build_preset("tiny", "fused")
    config = built.config.model_copy(update=update)
    save_checkpoint(built.model, built.tokenizer, built.image_processor, config, tmp_path)
    return Predictor.from_checkpoint(tmp_path, device="cpu")


def test_decision_bands_and_abstention() -> None:
    config = build_preset("tiny", "fused").config.model_copy(
        update={"generator_min_confidence": 0.5}
    )
    confident = [0.0, 0.9, 0.04, 0.03, 0.02, 0.01]
    unsure = [0.0, 0.3, 0.25, 0.2, 0.15, 0.1]
    ai = read_scores(0.95, confident, config.generators, config)
    assert (ai.decision, ai.generator) == ("ai_generated", "sd21")
    assert ai.generator_probs["sd21"] == pytest.approx(0.95 * 0.9)
    assert read_scores(0.95, unsure, config.generators, config).generator == "unknown"
    human = read_scores(0.05, confident, config.generators, config)
    assert (human.decision, human.generator) == ("human", "real")
    assert human.confidence_b == pytest.approx(0.95)
    review = read_scores(0.5, confident, config.generators, config)
    assert (review.decision, review.generator) == ("needs_review", "sd21")


def test_reading_scores_needs_no_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, serving.client.prediction; "
        "sys.exit('torch' in sys.modules or 'numpy' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_temperature_divides_the_task_a_logit(tmp_path: Path) -> None:
    scores = _with_config(tmp_path, temperature=4.0).scores(IMAGES, CAPTIONS)
    assert np.allclose(scores.p_ai, 1 / (1 + np.exp(-scores.logits_a / 4.0)), atol=1e-6)


@pytest.mark.slow
def test_trained_model_scores_smoke_images_sanely(trained_tiny: Path) -> None:
    from serving.imageio import decode_image
    from training.data import load_split

    predictor = Predictor.from_checkpoint(trained_tiny, device="cpu")
    samples = list(load_split("smoke", "test"))[:64]
    predictions = predictor.predict(
        [decode_image(sample.image) for sample in samples], [sample.caption for sample in samples]
    )
    for prediction in predictions:
        _check(prediction, predictor)
    labels = np.array([sample.label_a for sample in samples])
    p_ai = np.array([prediction.p_ai for prediction in predictions])
    # Far from a coin flip: AI images score higher than human ones on average.
    assert p_ai[labels == 1].mean() - p_ai[labels == 0].mean() > 0.3


def test_cached_caption_features_score_as_the_whole_model_does(untrained: Path) -> None:
    """Repeated, empty and missing captions: the cache's scores are the model's own, and each
    distinct caption goes through the text encoder once."""
    captions: list[str | None] = ["a cat", None, "a cat", "", "a dog on a very long sofa", None]
    images = [IMAGES[i % len(IMAGES)] for i in range(len(captions))]
    plain = Predictor.from_checkpoint(untrained, device="cpu", caption_cache=0)
    cached = Predictor.from_checkpoint(untrained, device="cpu", caption_cache=2)
    assert plain.captions is None
    assert cached.captions is not None
    expected = plain.scores(images, captions)
    first = cached.scores(images, captions)
    assert (cached.captions.misses, cached.captions.hits) == (3, 3)  # "a cat", "", "a dog..."
    assert len(cached.captions) == 2  # the capacity, least recently used dropped
    again = cached.scores(images, captions)
    for scores in (first, again):
        np.testing.assert_allclose(scores.p_ai, expected.p_ai, atol=1e-5)
        np.testing.assert_allclose(
            scores.generator_given_ai, expected.generator_given_ai, atol=1e-5
        )

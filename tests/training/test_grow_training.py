"""A generator head grown from 6 to 8 classes (CT2 + two) and fine-tuned on ``smoke:8``: the old
classes keep their answers within a stated tolerance, the new ones are learned."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from schemas.labels import GENERATORS
from serving.model.predictor import Predictor
from training.data import Sample, load_split
from training.trainer import TrainingError, TrainRequest, train

pytestmark = pytest.mark.unit

OLD_AGREEMENT = 0.9
"""Fewest old-class test items whose named generator must stay what the old model named."""
OLD_ACCURACY_DROP = 0.05
"""Most the old classes' Task B accuracy may fall."""
NEW_ACCURACY = 0.6
"""Least Task B accuracy on the two new classes (chance among seven generators is 0.14; one
measured run gave 0.81, the old classes 1.0, after the six epochs below)."""
EPOCHS = 6
"""Fine-tuning epochs on smoke:8: the new fingerprints need new features, not just new rows
(three epochs left them at about 0.25)."""


def named(checkpoint: Path, samples: Sequence[Sample]) -> np.ndarray:
    """The generator index each sample's P(generator | AI) ranks first."""
    predictor = Predictor.from_checkpoint(checkpoint, precision="fp32")
    out = []
    for start in range(0, len(samples), 50):
        chunk = samples[start : start + 50]
        images = [Image.open(io.BytesIO(s.image)).convert("RGB") for s in chunk]
        scores = predictor.scores(images, [s.caption for s in chunk])
        out.append(np.asarray(scores.generator_given_ai).argmax(axis=1))
    return np.concatenate(out)


def test_fine_tuning_on_a_bigger_label_set_needs_the_growth_asked_for(
    trained_tiny: Path, tmp_path: Path
) -> None:
    request = TrainRequest("smoke:8", tmp_path / "out", architecture=None, init_from=trained_tiny)
    with pytest.raises(TrainingError, match="same generator list"):
        train(request)


@pytest.mark.slow
def test_a_head_grown_from_6_to_8_keeps_the_old_answers_and_learns_the_new(
    trained_tiny: Path, tmp_path: Path
) -> None:
    grown = tmp_path / "grown"
    result = train(
        TrainRequest(
            data="smoke:8",
            output=grown,
            architecture=None,
            init_from=trained_tiny,
            grow_generators=True,
            epochs=EPOCHS,
            version="2",
            progress=False,
        )
    )
    assert result.config.generators == (*GENERATORS, "flux/1-dev", "openai/gpt-image-1")
    samples = list(load_split("smoke:8", "test"))
    truth = np.array([s.label_b for s in samples])
    old = (truth >= 1) & (truth < len(GENERATORS))
    new = truth >= len(GENERATORS)
    before, after = named(trained_tiny, samples), named(grown, samples)
    agreement = float((after[old] == before[old]).mean())
    old_before = float((before[old] == truth[old]).mean())
    old_after = float((after[old] == truth[old]).mean())
    new_after = float((after[new] == truth[new]).mean())
    figures = (
        f"agreement {agreement:.3f}, old {old_before:.3f} -> {old_after:.3f}, new {new_after:.3f}"
    )
    assert agreement >= OLD_AGREEMENT, figures
    assert old_after >= old_before - OLD_ACCURACY_DROP, figures
    assert new_after >= NEW_ACCURACY, figures

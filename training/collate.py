"""From data set items to model batches, for the trainer.

Images are decoded with the serving decoder (:func:`serving.imageio.decode_image`) so training
sees exactly what serving sees, then optionally augmented, then pre-processed by the checkpoint's
:class:`~serving.model.preprocess.Preprocessor`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from serving.imageio import decode_image
from serving.model.preprocess import Preprocessor
from training.augment import DEFAULT_AUGMENT, AugmentConfig, augment
from training.data import Sample


@dataclass(frozen=True)
class Item:
    """One data set item and whether it is augmented (training split) or not (evaluation)."""

    sample: Sample
    augment: bool


class SampleDataset(Dataset[Item]):
    """A map-style dataset over a sequence of samples (the Trainer shuffles and shards it)."""

    def __init__(self, samples: Sequence[Sample], *, augment: bool) -> None:
        self.samples = samples
        self.augment = augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Item:
        return Item(self.samples[index], self.augment)


class DetectorCollator:
    """Turns a list of Items into ``Detector.forward`` keyword arguments with labels.

    Augmentation randomness comes from ``torch.initial_seed()`` of the process that collates, which
    differs between DataLoader workers and epochs and follows the Trainer's seed.
    """

    def __init__(
        self, preprocessor: Preprocessor, augment_config: AugmentConfig = DEFAULT_AUGMENT
    ) -> None:
        self.preprocessor = preprocessor
        self.augment_config = augment_config
        self._rng: random.Random | None = None
        self._rng_seed: int | None = None

    def __call__(self, items: Sequence[Item]) -> dict[str, torch.Tensor]:
        rng = self._random()
        images = []
        for item in items:
            image = decode_image(item.sample.image)
            images.append(augment(image, rng, self.augment_config) if item.augment else image)
        batch = self.preprocessor(images, [item.sample.caption for item in items])
        batch["labels_a"] = torch.tensor([item.sample.label_a for item in items], dtype=torch.long)
        batch["labels_b"] = torch.tensor([item.sample.label_b for item in items], dtype=torch.long)
        return batch

    def _random(self) -> random.Random:
        seed = torch.initial_seed()
        if self._rng is None or seed != self._rng_seed:
            # Augmentation needs reproducibility, not unpredictability.
            self._rng, self._rng_seed = random.Random(seed), seed  # noqa: S311
        return self._rng

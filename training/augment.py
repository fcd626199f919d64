"""Robustness augmentations, and the one encoding every training and evaluation image gets.

The augmentations imitate what happens to images on their way to a moderation queue:
re-compression, resizing, cropping, blurring and sensor noise, and, with ``degrade_p``, one of the
named degradations that ``aigis evaluate --robustness`` measures (:mod:`training.degrade`). Every
augmentation is drawn independently of the image's class, so real and AI images get the same
formats and qualities and a format shortcut in the data stops paying.

:func:`normalise_encoding` (defined in ``training.data.encoding``, which the readers apply at load
time) gives every image the same file format, so a model cannot learn "PNG means AI" from the
container; it cannot remove the traces an earlier, coarser compression left in the pixels, which
is what the degradations above are for. Imports Pillow and numpy only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image, ImageFilter

from training.data.encoding import decode, encode_jpeg, normalise_encoding, to_rgb
from training.degrade import DEGRADATIONS, FORMAT_DEGRADATIONS, pick

__all__ = ["DEFAULT_AUGMENT", "AugmentConfig", "augment", "normalise_encoding"]


@dataclass(frozen=True)
class AugmentConfig:
    """Probability and strength of each augmentation; each one fires independently."""

    crop_p: float = 0.3
    crop_min_area: float = 0.6
    """Smallest crop as a fraction of the image area (aspect ratio kept)."""
    resize_p: float = 0.3
    resize_scale: tuple[float, float] = (0.5, 1.0)
    """Range of the factor each side is scaled by."""
    blur_p: float = 0.2
    blur_radius: tuple[float, float] = (0.2, 1.2)
    noise_p: float = 0.2
    noise_sigma: tuple[float, float] = (1.0, 6.0)
    """Standard deviation of Gaussian noise, in 8-bit grey levels."""
    jpeg_p: float = 0.3
    jpeg_quality: tuple[int, int] = (60, 95)
    degrade_p: float = 0.0
    """Probability of one degradation of ``degradations``, chosen uniformly, applied last. Off
    by default: on the smoke set it slows the tiny model's learning (see docs/training.md)."""
    degradations: tuple[str, ...] = FORMAT_DEGRADATIONS
    """Names in :data:`training.degrade.DEGRADATIONS`."""

    def __post_init__(self) -> None:
        pick(self.degradations)  # raises ValueError naming an unknown one


DEFAULT_AUGMENT: Final[AugmentConfig] = AugmentConfig()

_RESAMPLERS: Final[tuple[Image.Resampling, ...]] = (
    Image.Resampling.BILINEAR,
    Image.Resampling.BICUBIC,
    Image.Resampling.LANCZOS,
)


def augment(
    image: Image.Image, rng: random.Random, config: AugmentConfig = DEFAULT_AUGMENT
) -> Image.Image:
    """A randomly degraded RGB copy of ``image``; the same ``rng`` state gives the same result.

    Order follows an image's life: crop, resize, blur, sensor noise, JPEG re-compression, then
    one named degradation (a platform's re-encode, a screenshot, ...).
    """
    image = to_rgb(image)
    if rng.random() < config.crop_p:
        image = _random_crop(image, rng, config.crop_min_area)
    if rng.random() < config.resize_p:
        factor = rng.uniform(*config.resize_scale)
        size = (max(8, round(image.width * factor)), max(8, round(image.height * factor)))
        image = image.resize(size, rng.choice(_RESAMPLERS))
    if rng.random() < config.blur_p:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(*config.blur_radius)))
    if rng.random() < config.noise_p:
        image = _add_noise(image, rng.uniform(*config.noise_sigma), rng.getrandbits(64))
    if rng.random() < config.jpeg_p:
        quality = rng.randint(*config.jpeg_quality)
        image = decode(encode_jpeg(image, quality))
    if config.degradations and rng.random() < config.degrade_p:
        image = DEGRADATIONS[rng.choice(config.degradations)](image)
    return image


def _random_crop(image: Image.Image, rng: random.Random, min_area: float) -> Image.Image:
    side = rng.uniform(min_area, 1.0) ** 0.5
    width = min(image.width, max(8, round(image.width * side)))
    height = min(image.height, max(8, round(image.height * side)))
    left = rng.randint(0, image.width - width)
    top = rng.randint(0, image.height - height)
    return image.crop((left, top, left + width, top + height))


def _add_noise(image: Image.Image, sigma: float, seed: int) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    noise = np.random.default_rng(seed).normal(0.0, sigma, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))

"""Simulated generator fingerprints for the ``smoke`` data set.

Each function turns a real crop into a "generated" one the way a generator's decoder marks its
output (in the spirit of AutoGAN): upsampling and fixed decoder patterns leave periodic artefacts,
spectral peaks at frequencies typical of the architecture. Like a real generator, the artefacts
are locked to the pixel grid of the model's native resolution (``smoke.NATIVE``, which is also
what the detector's image processor resizes to), with periods of 4 and 8 pixels. Strength varies
per image (seeded ``rng``), so no single threshold separates the classes. None of this imitates a
real model; it gives the pipeline something learnable and attributable.

Input and output: float32 arrays of shape (H, W, 3) in [0, 255], H and W multiples of 8.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

Fingerprint = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _resize(pixels: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """Resize each channel in float precision; ``size`` is (width, height)."""
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(pixels[..., c])).resize(size, resample))
        for c in range(pixels.shape[2])
    ]
    return np.stack(channels, axis=-1).astype(np.float32)


def _blur(pixels: np.ndarray, sigma: float) -> np.ndarray:
    return np.asarray(gaussian_filter(pixels, sigma=(sigma, sigma, 0)), dtype=np.float32)


def _f32(pixels: np.ndarray) -> np.ndarray:
    return np.asarray(pixels, dtype=np.float32)


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:height, 0:width]
    return rows.astype(np.float32), cols.astype(np.float32)


def nearest_upsampling(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``sd21``: 4x upsampling by pixel repetition, blended with the detail, and column banding.

    Blockiness alone depends on the content (a flat region shows none); the banding of period 4,
    a decoder's per-column bias, marks every image.
    """
    height, width = pixels.shape[:2]
    small = _resize(pixels, (width // 4, height // 4), Image.Resampling.BOX)
    blocky = _resize(small, (width, height), Image.Resampling.NEAREST)
    weight = rng.uniform(0.4, 0.7)
    _, cols = _grid(height, width)
    banding = np.cos(np.pi * cols / 2)[..., None]
    return _f32(weight * blocky + (1 - weight) * pixels + rng.uniform(4.0, 7.0) * banding)


def bilinear_grid(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``sdxl``: bilinear 2x upsampling (lost fine detail) plus a faint 8-pixel latent grid."""
    height, width = pixels.shape[:2]
    small = _resize(pixels, (width // 2, height // 2), Image.Resampling.BOX)
    smooth = _resize(small, (width, height), Image.Resampling.BILINEAR)
    rows, cols = _grid(height, width)
    lines = ((rows % 8) == 0) | ((cols % 8) == 0)
    return _f32(smooth + rng.uniform(6.0, 10.0) * lines[..., None])


def checkerboard(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``sd3``: transposed-convolution checkerboard, a multiplicative pattern of period 4."""
    height, width = pixels.shape[:2]
    rows, cols = _grid(height, width)
    pattern = (np.cos(np.pi * rows / 2) * np.cos(np.pi * cols / 2))[..., None]
    strength = rng.uniform(0.04, 0.08)
    return _f32(pixels * (1 + strength * pattern) + 4.0 * pattern)


def smooth_texture(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``dalle3``: over-smoothed content plus a fixed fine texture tiled every 8 pixels."""
    height, width = pixels.shape[:2]
    smooth = _blur(pixels, rng.uniform(0.8, 1.3))
    # The tile is the same for every image of the class, like a decoder's fixed bias pattern.
    tile = np.random.default_rng(8).normal(0.0, 1.0, (8, 8, 1)).astype(np.float32)
    texture = np.tile(tile, (height // 8 + 1, width // 8 + 1, 1))[:height, :width]
    return _f32(smooth + rng.uniform(4.0, 7.0) * texture)


def colour_ripple(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``midjourney6``: channel cross-talk, sharpening, and a diagonal ripple of period 8."""
    height, width = pixels.shape[:2]
    mix = np.array([[0.86, 0.10, 0.04], [0.06, 0.84, 0.10], [0.04, 0.12, 0.84]], np.float32)
    mixed = pixels @ mix.T
    sharpened = mixed + rng.uniform(0.3, 0.6) * (mixed - _blur(mixed, 1.0))
    rows, cols = _grid(height, width)
    ripple = np.sin(2 * np.pi * (rows + cols) / 8.0)[..., None]
    return _f32(sharpened + rng.uniform(4.0, 7.0) * ripple)


FINGERPRINTS: Final[dict[str, Fingerprint]] = {
    "sd21": nearest_upsampling,
    "sdxl": bilinear_grid,
    "sd3": checkerboard,
    "dalle3": smooth_texture,
    "midjourney6": colour_ripple,
}
"""Simulated generator of each CT2 generator name."""

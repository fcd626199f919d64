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


def horizontal_banding(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``flux/1-dev``: a horizontal smear (blur along rows only) and row banding of period 16."""
    height, width = pixels.shape[:2]
    rows, _ = _grid(height, width)
    sigma = rng.uniform(1.5, 2.2)
    smeared = np.asarray(gaussian_filter(pixels, sigma=(0, sigma, 0)), dtype=np.float32)
    banding = np.cos(2 * np.pi * rows / 16.0)[..., None]
    return _f32(smeared + rng.uniform(8.0, 12.0) * banding)


def warm_stripes(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``openai/gpt-image-1``: a warm cast and a colour-only column stripe of period 8."""
    height, width = pixels.shape[:2]
    _, cols = _grid(height, width)
    stripe = np.sin(2 * np.pi * cols / 8.0)[..., None] * np.array([1.0, 0.0, -1.0], np.float32)
    cast = np.array([rng.uniform(1.1, 1.15), 1.0, rng.uniform(0.82, 0.88)], np.float32)
    return _f32(pixels * cast + rng.uniform(9.0, 13.0) * stripe)


def antidiagonal_ripple(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``google/imagen-4``: light blur and a ripple of period 8 along the other diagonal."""
    height, width = pixels.shape[:2]
    rows, cols = _grid(height, width)
    ripple = np.cos(2 * np.pi * (rows - cols) / 8.0)[..., None]
    return _f32(_blur(pixels, rng.uniform(0.5, 0.9)) + rng.uniform(8.0, 12.0) * ripple)


def dot_lattice(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``midjourney7``: bright dashes (two pixels wide) on a 4-pixel lattice, as a decoder's
    stride leaves them."""
    height, width = pixels.shape[:2]
    rows, cols = _grid(height, width)
    dashes = (((rows % 4) == 0) & ((cols % 4) < 2))[..., None]
    return _f32(pixels + rng.uniform(18.0, 24.0) * dashes)


def chroma_checker(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``bytedance/seedream-4``: a checkerboard of period 8 in the red-blue balance only."""
    height, width = pixels.shape[:2]
    rows, cols = _grid(height, width)
    board = (np.sign(np.sin(np.pi * rows / 4.0 + 0.5) * np.sin(np.pi * cols / 4.0 + 0.5)))[
        ..., None
    ]
    tint = np.array([1.0, 0.0, -1.0], np.float32)
    return _f32(pixels + rng.uniform(9.0, 13.0) * board * tint)


def posterised_lines(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``qwen/qwen-image``: values posterised to 24 levels, and a column line every 8 pixels."""
    height, width = pixels.shape[:2]
    _, cols = _grid(height, width)
    step = 256.0 / 24
    posterised = np.floor(pixels / step) * step + step / 2
    lines = ((cols % 8) == 4)[..., None]
    return _f32(posterised - rng.uniform(8.0, 12.0) * lines)


def block_offsets(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``ideogram/3``: every 8x8 block shifted by a fixed per-block offset, as if tiled."""
    height, width = pixels.shape[:2]
    # The offsets repeat every 4 blocks and are the same for every image of the class.
    offsets = np.random.default_rng(3).choice([-1.0, 1.0], (4, 4, 1)).astype(np.float32)
    blocks = np.kron(offsets, np.ones((8, 8, 1), np.float32))
    tiled = np.tile(blocks, (height // 32 + 1, width // 32 + 1, 1))[:height, :width]
    return _f32(pixels + rng.uniform(9.0, 13.0) * tiled)


FINGERPRINTS: Final[dict[str, Fingerprint]] = {
    "sd21": nearest_upsampling,
    "sdxl": bilinear_grid,
    "sd3": checkerboard,
    "dalle3": smooth_texture,
    "midjourney6": colour_ripple,
    "flux/1-dev": horizontal_banding,
    "openai/gpt-image-1": warm_stripes,
    "google/imagen-4": antidiagonal_ripple,
    "midjourney7": dot_lattice,
    "bytedance/seedream-4": chroma_checker,
    "qwen/qwen-image": posterised_lines,
    "ideogram/3": block_offsets,
}
"""Simulated generator of each generator name: the five CT2 generators first, then newer ones
(names with a family where the maker publishes several), in the order smoke label sets take them."""

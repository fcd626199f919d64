"""The named degradations images meet on their way to a moderation queue.

One list serves two purposes: ``aigis evaluate --robustness`` scores every test image under each
degradation separately, real and AI images alike, and training augmentation
(:mod:`training.augment`) applies them, at random, to both classes. Applying a degradation to
both classes is what exposes a format shortcut: a detector that learned "JPEG traces mean real"
loses its AI recall once AI images carry the same traces.

Every degradation is deterministic (the same image gives the same result) and returns an RGB
image. Imports Pillow and numpy only.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Final

import numpy as np
from PIL import Image

from training.data.encoding import decode, encode_jpeg, to_rgb

Degradation = Callable[[Image.Image], Image.Image]

CROP_SIDE: Final[float] = 0.7
"""Share of each side a centre crop keeps (about half the area)."""
WEBP_QUALITY: Final[int] = 75
SCREENSHOT_SCALE: Final[float] = 0.8
"""A screenshot of an image shown on a display at 125 % scaling holds it at 80 % of its size."""
NOISE_SIGMA: Final[float] = 5.0
"""Standard deviation of the Gaussian sensor noise, in 8-bit grey levels."""
NOISE_SEED: Final[int] = 0


def jpeg(quality: int) -> Degradation:
    """Re-encode as JPEG at ``quality`` (4:2:0 chroma, Pillow's default, as most sites use)."""

    def degrade(image: Image.Image) -> Image.Image:
        return decode(encode_jpeg(to_rgb(image), quality))

    return degrade


def resize(factor: float) -> Degradation:
    """Scale both sides by ``factor`` with a bicubic filter (at least 8 pixels a side)."""

    def degrade(image: Image.Image) -> Image.Image:
        size = (max(8, round(image.width * factor)), max(8, round(image.height * factor)))
        return to_rgb(image).resize(size, Image.Resampling.BICUBIC)

    return degrade


def centre_crop(image: Image.Image) -> Image.Image:
    """The centre ``CROP_SIDE`` of each side."""
    width = max(8, round(image.width * CROP_SIDE))
    height = max(8, round(image.height * CROP_SIDE))
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return to_rgb(image).crop((left, top, left + width, top + height))


def webp(image: Image.Image) -> Image.Image:
    """Re-encode as lossy WebP at ``WEBP_QUALITY``."""
    buffer = io.BytesIO()
    to_rgb(image).save(buffer, format="WEBP", quality=WEBP_QUALITY)
    return decode(buffer.getvalue())


def screenshot(image: Image.Image) -> Image.Image:
    """What a screenshot makes of an image: shown at a display's scale (bilinear, the way
    browsers resample), captured in 8 bits and saved as PNG, then shared as JPEG quality 90."""
    size = (
        max(8, round(image.width * SCREENSHOT_SCALE)),
        max(8, round(image.height * SCREENSHOT_SCALE)),
    )
    shown = to_rgb(image).resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    shown.save(buffer, format="PNG")
    return jpeg(90)(decode(buffer.getvalue()))


def noise(image: Image.Image) -> Image.Image:
    """Add Gaussian noise of ``NOISE_SIGMA`` grey levels (a fixed seed: deterministic)."""
    pixels = np.asarray(to_rgb(image), dtype=np.float32)
    rng = np.random.default_rng(NOISE_SEED)
    noisy = pixels + rng.normal(0.0, NOISE_SIGMA, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))


DEGRADATIONS: Final[dict[str, Degradation]] = {
    "jpeg_q95": jpeg(95),
    "jpeg_q75": jpeg(75),
    "jpeg_q50": jpeg(50),
    "resize_50": resize(0.5),
    "resize_25": resize(0.25),
    "crop": centre_crop,
    "webp": webp,
    "screenshot": screenshot,
    "noise": noise,
}
"""Every degradation by name, in the order reports list them."""

FORMAT_DEGRADATIONS: Final[tuple[str, ...]] = (
    "jpeg_q95",
    "jpeg_q75",
    "jpeg_q50",
    "webp",
    "screenshot",
)
"""The re-encodes: training's default, the ones that take a format shortcut away. (The resizes
and the crop are left to the other augmentations, which draw their sizes at random; a fixed
quarter-size copy erases the fine traces a detector has to learn, and slows learning.)"""


def pick(names: str | Sequence[str]) -> dict[str, Degradation]:
    """The degradations named (a comma-separated string or a sequence; ``all``: every one;
    ``formats``: :data:`FORMAT_DEGRADATIONS`), in the order given.

    Raises ValueError naming the unknown ones and the known ones.
    """
    wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names)]
    wanted = [name for name in wanted if name]
    if wanted == ["all"]:
        return dict(DEGRADATIONS)
    if wanted == ["formats"]:
        wanted = list(FORMAT_DEGRADATIONS)
    unknown = [name for name in wanted if name not in DEGRADATIONS]
    if unknown:
        raise ValueError(
            f"unknown degradation(s) {', '.join(unknown)}; known: {', '.join(DEGRADATIONS)}"
        )
    return {name: DEGRADATIONS[name] for name in wanted}

"""Decoding image bytes, and the one encoding every training and evaluation image gets.

Real and generated images usually arrive in different file formats (PNG from a generator, JPEG
from a camera). A model trained on them as they are learns the format, not the image, so readers
re-encode every image the same way (:func:`normalise_encoding`) when a split is loaded. Decoding
is ``serving.imageio``'s, the one serving uses (EXIF orientation, transparency, 16-bit, animation,
decompression-bomb limits). Imports Pillow and numpy only.
"""

from __future__ import annotations

import io
from typing import Final

from PIL import Image

from serving.errors import ImageError
from serving.imageio import decode_image
from training.data.sample import DataError

NORMAL_FORMAT: Final[str] = "JPEG"
NORMAL_QUALITY: Final[int] = 95
"""High enough to keep fine image detail, and every file has then been through JPEG once."""
MAX_TRAINING_IMAGE_BYTES: Final[int] = 256 * 1024 * 1024
"""Training images are curated, not untrusted uploads: allow large lossless files."""


def decode(data: bytes) -> Image.Image:
    """Decode image file bytes to upright RGB, or raise DataError saying why it cannot."""
    try:
        return decode_image(data, max_bytes=MAX_TRAINING_IMAGE_BYTES)
    except ImageError as err:
        raise DataError(
            f"an image ({len(data)} bytes) is unusable ({err.reason}): {err.detail}. "
            "Remove the item or replace it with a valid image file."
        ) from err


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as RGB, converted the way :func:`decode` converts files (white behind alpha)."""
    if image.mode == "RGB":
        return image
    buffer = io.BytesIO()
    try:
        image.save(buffer, format="PNG")
    except OSError:  # modes PNG cannot hold (CMYK, YCbCr, LAB, HSV) have no alpha to composite
        return image.convert("RGB")
    return decode(buffer.getvalue())


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=NORMAL_FORMAT, quality=quality)
    return buffer.getvalue()


def normalise_encoding(image: Image.Image | bytes) -> bytes:
    """Re-encode an image (or image file bytes) as RGB JPEG at quality 95.

    Deterministic: the same input always gives the same bytes.
    """
    if isinstance(image, bytes):
        image = decode(image)
    return encode_jpeg(to_rgb(image), NORMAL_QUALITY)

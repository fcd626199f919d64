"""Robustness augmentations and the one training encoding."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image

from training.augment import AugmentConfig, augment, normalise_encoding
from training.data import DataError

pytestmark = pytest.mark.unit

EVERYTHING = AugmentConfig(
    crop_p=1.0, resize_p=1.0, blur_p=1.0, noise_p=1.0, jpeg_p=1.0, degrade_p=1.0
)
NOTHING = AugmentConfig(
    crop_p=0.0, resize_p=0.0, blur_p=0.0, noise_p=0.0, jpeg_p=0.0, degrade_p=0.0
)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_same_seed_same_result(photo: Image.Image) -> None:
    first = augment(photo, random.Random(7), EVERYTHING)
    again = augment(photo, random.Random(7), EVERYTHING)
    other = augment(photo, random.Random(8), EVERYTHING)
    assert first.tobytes() == again.tobytes()
    assert first.size != other.size or first.tobytes() != other.tobytes()


def test_every_augmentation_changes_the_image_and_keeps_rgb(photo: Image.Image) -> None:
    out = augment(photo, random.Random(1), EVERYTHING)
    assert out.mode == "RGB"
    assert out.width < photo.width  # cropped and resized
    assert out.height >= 8


def test_with_no_augmentation_the_pixels_are_untouched(photo: Image.Image) -> None:
    assert augment(photo, random.Random(1), NOTHING).tobytes() == photo.tobytes()


def test_default_probabilities_leave_some_images_untouched(photo: Image.Image) -> None:
    rng = random.Random(3)
    touched = [augment(photo, rng).tobytes() != photo.tobytes() for _ in range(40)]
    assert 0 < sum(touched) < 40


def test_grey_and_transparent_inputs_come_out_rgb() -> None:
    rng = random.Random(0)
    for image in (Image.new("L", (20, 20), 3), Image.new("RGBA", (20, 20), (0, 0, 0, 0))):
        assert augment(image, rng, EVERYTHING).mode == "RGB"


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "BMP", "JPEG"])
def test_normalise_encoding_gives_one_format(photo: Image.Image, fmt: str) -> None:
    out = normalise_encoding(_encoded(photo, fmt))
    decoded = Image.open(io.BytesIO(out))
    assert (decoded.format, decoded.mode, decoded.size) == ("JPEG", "RGB", photo.size)
    assert normalise_encoding(_encoded(photo, fmt)) == out


def test_normalise_encoding_flattens_transparency_onto_white() -> None:
    clear = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    decoded = Image.open(io.BytesIO(normalise_encoding(clear))).convert("RGB")
    assert min(decoded.getpixel((8, 8))) > 245  # type: ignore[arg-type]
    assert normalise_encoding(clear) == normalise_encoding(_encoded(clear, "PNG"))


def test_normalise_encoding_refuses_garbage() -> None:
    with pytest.raises(DataError, match="undecodable_image"):
        normalise_encoding(b"this is not an image file")

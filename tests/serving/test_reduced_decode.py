"""serving.imageio with ``target_side``: images decoded no larger than the model needs, still
upright RGB, and what the model sees after CLIP's own resize barely changes."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from serving.imageio import decode_image, probe_image
from serving.model.config import PreprocessConfig
from serving.model.preprocess import make_image_processor

pytestmark = pytest.mark.unit

SIDE = PreprocessConfig().decode_side  # what the model server passes: 448 for a 224 model
WHITE = (255, 255, 255)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def smooth(size: tuple[int, int], channels: int, seed: int = 0) -> np.ndarray:
    """A smooth random picture (a bicubic blow-up of 8x8 random pixels)."""
    coarse = np.random.default_rng(seed).integers(0, 256, (8, 8, channels), dtype=np.uint8)
    blown = Image.fromarray(coarse.squeeze(axis=2) if channels == 1 else coarse)
    return np.asarray(blown.resize(size, Image.Resampling.BICUBIC))


# -- memory and time -----------------------------------------------------------------------------

_PEAK = """
import resource, sys, time
from serving.imageio import decode_image
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.monotonic()
image = decode_image(data, target_side=int(sys.argv[2]))
elapsed = time.monotonic() - started
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(image.width, image.height, grown * 1024, elapsed)
"""


def _decode_in_child(path: Path, target_side: int) -> tuple[tuple[int, int], int, float]:
    """Decoded size, growth of the peak resident memory in bytes, and seconds of a fresh
    process decoding ``path`` (PIL's buffers are not seen by tracemalloc)."""
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, str(path), str(target_side)],
        capture_output=True,
        text=True,
        check=True,
    )
    width, height, grown, elapsed = done.stdout.split()
    return (int(width), int(height)), int(grown), float(elapsed)


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """6300x6300 images: a ~170 kB RGBA PNG that decodes to 151 MiB, and a JPEG."""
    folder = tmp_path_factory.mktemp("large")
    paths = {"png": folder / "large.png", "jpeg": folder / "large.jpg"}
    Image.new("RGBA", (6300, 6300), (10, 20, 30, 128)).save(paths["png"])
    Image.new("RGB", (6300, 6300), (10, 20, 30)).save(paths["jpeg"], quality=90)
    return paths


def test_large_png_holds_no_more_than_its_decoder_output(large: dict[str, Path]) -> None:
    size, grown, elapsed = _decode_in_child(large["png"], SIDE)
    assert size == (450, 450)  # reduced by 14: the short side stays at least 448
    # PNG has no reduced decoding: its decoder writes the full 6300x6300x4 (151 MiB) once. Nothing
    # else is full-size (a full decode and alpha compositing peak at about 5 times that).
    assert grown < 1.25 * 6300 * 6300 * 4
    assert elapsed < 10


def test_large_jpeg_is_decoded_small_by_the_decoder(large: dict[str, Path]) -> None:
    size, grown, elapsed = _decode_in_child(large["jpeg"], SIDE)
    assert size == (788, 788)  # DCT scaling by 1/8; another halving would pass below 448
    assert grown < 40 * 2**20  # a full decode would be 114 MiB
    assert elapsed < 5


# -- every kind of image still decodes right ----------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "fmt", "options"),
    [
        ("1", "PNG", {}),
        ("L", "PNG", {}),
        ("LA", "PNG", {}),
        ("P", "PNG", {}),
        ("P", "PNG", {"transparency": 3}),
        ("P", "GIF", {"transparency": 3}),
        ("RGB", "PNG", {}),
        ("RGB", "PNG", {"transparency": (10, 20, 30)}),
        ("RGBA", "PNG", {}),
        ("RGBA", "WEBP", {"lossless": True}),
        ("CMYK", "TIFF", {}),
        ("I;16", "PNG", {}),
        ("F", "TIFF", {}),
    ],
)
def test_reduced_decode_is_the_full_decode_box_reduced(
    mode: str, fmt: str, options: dict[str, object]
) -> None:
    rgba = Image.fromarray(smooth((903, 701), 4), "RGBA")
    grey = smooth((903, 701), 1)
    if mode == "I;16":
        picture = Image.fromarray(grey.astype(np.uint16) * 257)
    elif mode == "F":
        picture = Image.fromarray(grey.astype(np.float32) / 255)
    elif mode == "CMYK":
        picture = Image.fromarray(np.asarray(rgba), "CMYK")
    else:
        picture = rgba.convert(mode)
    data = encode(picture, fmt, **options)
    reduced = decode_image(data, target_side=100)
    expected = decode_image(data).reduce(7)  # 701 // 100
    assert (reduced.mode, reduced.size) == ("RGB", expected.size)
    difference = np.abs(np.asarray(reduced, np.int16) - np.asarray(expected, np.int16))
    assert difference.max() <= 2  # rounding of premultiplied alpha and of 16-bit levels


def test_cmyk_jpeg_becomes_rgb_through_the_decoder_scaling() -> None:
    cyan = Image.new("CMYK", (2000, 1500), (255, 0, 0, 0))
    image = decode_image(encode(cyan, "JPEG", quality=95), target_side=SIDE)
    assert (image.mode, image.size) == ("RGB", (1000, 750))
    red, green, blue = image.getpixel((500, 375))
    assert red < 30
    assert green > 220
    assert blue > 220


def test_sixteen_bit_levels_are_scaled_when_reduced() -> None:
    levels = np.full((1800, 1800), 32_896, dtype=np.uint16)  # 128 * 257
    levels[:, :900] = 65_535
    image = decode_image(encode(Image.fromarray(levels), "PNG"), target_side=SIDE)
    assert image.size == (450, 450)
    assert image.getpixel((10, 10)) == WHITE
    assert image.getpixel((400, 10)) == (128, 128, 128)


def test_palette_transparency_is_white_when_reduced() -> None:
    palette = Image.new("P", (1800, 1800), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    palette.paste(0, (0, 0, 900, 1800))
    image = decode_image(encode(palette, "PNG", transparency=0), target_side=SIDE)
    assert image.size == (450, 450)
    assert image.getpixel((10, 10)) == WHITE
    assert image.getpixel((400, 10)) == (255, 0, 0)


def test_animation_yields_its_first_frame_reduced() -> None:
    frames = [Image.new("RGB", (1000, 1000), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    image = decode_image(data, target_side=SIDE)
    assert image.size == (500, 500)
    assert image.getpixel((250, 250)) == (255, 0, 0)


def test_multi_picture_jpeg_yields_its_first_picture_reduced() -> None:
    pictures = [Image.new("RGB", (2000, 1500), colour) for colour in [(200, 0, 0), (0, 0, 200)]]
    data = encode(pictures[0], "MPO", save_all=True, append_images=pictures[1:])
    assert probe_image(data) == ("MPO", 2000, 1500)
    image = decode_image(data, target_side=SIDE)
    assert image.size == (1000, 750)
    assert image.getpixel((500, 375))[0] > 180


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_one_pixel_is_left_as_it_is(fmt: str) -> None:
    image = decode_image(encode(Image.new("RGB", (1, 1), (0, 200, 0)), fmt), target_side=SIDE)
    assert image.size == (1, 1)
    assert image.getpixel((0, 0))[1] > 190


def test_a_target_side_below_one_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="target_side"):
        decode_image(encode(Image.new("RGB", (4, 4)), "PNG"), target_side=0)


# -- what the model sees -------------------------------------------------------------------------


def _photo(size: tuple[int, int], seed: int) -> Image.Image:
    """Smooth colour, sharp-edged shapes, grain and a slight blur: photo-like content."""
    rng = np.random.default_rng(seed)
    picture = Image.fromarray(smooth(size, 3, seed))
    draw = ImageDraw.Draw(picture)
    for _ in range(60):
        x, y = rng.integers(0, size[0]), rng.integers(0, size[1])
        r = int(rng.integers(20, 400))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    grain = rng.normal(0, 12, (size[1], size[0], 3))
    noisy = np.clip(np.asarray(picture) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(noisy).filter(ImageFilter.GaussianBlur(1))


def _noise(size: tuple[int, int], seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


# Mean absolute difference of the normalised pixel tensors (CLIP's units: one unit is about 70
# grey levels). Photo-like images measure ~0.007 as PNG and ~0.003 as JPEG; white noise, the
# worst case for averaging before a bicubic resize, ~0.033 as PNG and ~0.014 as JPEG.
PHOTO_TOLERANCE = 0.02
NOISE_TOLERANCE = 0.05


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize(
    ("make", "size", "tolerance"),
    [
        (_photo, (2000, 1500), PHOTO_TOLERANCE),
        (_photo, (1500, 2000), PHOTO_TOLERANCE),
        (_photo, (3200, 2400), PHOTO_TOLERANCE),
        (lambda size, seed: Image.fromarray(smooth(size, 3, seed)), (2000, 1500), PHOTO_TOLERANCE),
        (_noise, (2000, 1500), NOISE_TOLERANCE),
    ],
    ids=["photo", "photo-portrait", "photo-8mp", "gradient", "noise"],
)
def test_reduction_barely_changes_what_the_model_sees(
    make: Callable[[tuple[int, int], int], Image.Image],
    size: tuple[int, int],
    tolerance: float,
    fmt: str,
) -> None:
    processor = make_image_processor(PreprocessConfig())
    picture = make(size, sum(size))
    options = {"quality": 90} if fmt == "JPEG" else {"compress_level": 1}
    data = encode(picture, fmt, **options)
    full, reduced = decode_image(data), decode_image(data, target_side=SIDE)
    assert min(reduced.size) < min(full.size)
    tensors = [
        processor(images=[image], return_tensors="np")["pixel_values"][0]
        for image in (full, reduced)
    ]
    assert tensors[0].shape == tensors[1].shape == (3, 224, 224)
    assert float(np.abs(tensors[0] - tensors[1]).mean()) < tolerance

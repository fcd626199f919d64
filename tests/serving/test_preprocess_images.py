"""serving.imageio: every kind of real image decodes to upright RGB; every bad input says why."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from serving.errors import ImageError
from serving.imageio import decode_image, probe_image

pytestmark = pytest.mark.unit

WHITE = (255, 255, 255)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise_jpeg(size: int = 128) -> bytes:
    return encode(Image.effect_noise((size, size), 60).convert("RGB"), "JPEG", quality=90)


def test_rgb_jpeg_decodes_to_rgb() -> None:
    image = decode_image(noise_jpeg())
    assert (image.mode, image.size) == ("RGB", (128, 128))


def test_transparent_rgba_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (10, 8), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    image = decode_image(encode(rgba, "PNG"))
    assert image.mode == "RGB"
    assert image.getpixel((5, 5)) == WHITE
    assert image.getpixel((0, 0)) == (255, 0, 0)


def test_la_is_composited_on_white() -> None:
    image = decode_image(encode(Image.new("LA", (6, 6), (0, 0)), "PNG"))
    assert image.getpixel((1, 1)) == WHITE


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency_is_composited_on_white(fmt: str) -> None:
    palette = Image.new("P", (10, 8), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    palette.putpixel((0, 0), 0)
    image = decode_image(encode(palette, fmt, transparency=0))
    assert image.getpixel((0, 0)) == WHITE
    assert image.getpixel((5, 5)) == (255, 0, 0)


def test_greyscale_becomes_three_equal_channels() -> None:
    image = decode_image(encode(Image.new("L", (5, 5), 77), "PNG"))
    assert image.getpixel((2, 2)) == (77, 77, 77)


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    levels = np.array([[0, 32_896, 65_535]], dtype=np.uint16)  # 32896 = 128 * 257
    data = encode(Image.fromarray(levels), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    image = decode_image(data)
    assert [image.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_cmyk_jpeg_becomes_rgb() -> None:
    cyan = Image.new("CMYK", (16, 16), (255, 0, 0, 0))
    red, green, blue = decode_image(encode(cyan, "JPEG", quality=95)).getpixel((8, 8))
    assert red < 30
    assert green > 220
    assert blue > 220


@pytest.mark.parametrize(
    ("half", "target_side", "decoded_half"),
    [(20, None, 20), (1000, 448, 500)],  # 1000: scaled by 1/2 in the decoder, then turned
    ids=["full", "reduced"],
)
def test_exif_orientation_is_applied(half: int, target_side: int | None, decoded_half: int) -> None:
    image = Image.new("RGB", (2 * half, half), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, half, half))  # left half red
    exif = image.getexif()
    exif[0x0112] = 6  # stored rotated: display needs 90 degrees clockwise
    data = encode(image, "JPEG", exif=exif, quality=95)
    upright = decode_image(data, target_side=target_side)
    assert upright.size == (decoded_half, 2 * decoded_half)
    assert upright.getpixel((decoded_half // 2, decoded_half // 4))[0] > 200  # red now on top
    assert probe_image(data) == ("JPEG", half, 2 * half)


def test_animation_yields_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert decode_image(data).getpixel((4, 4)) == (255, 0, 0)


def test_probe_reads_format_and_size() -> None:
    assert probe_image(encode(Image.new("RGB", (30, 20)), "PNG")) == ("PNG", 30, 20)


def test_probing_a_png_decodes_none_of_its_pixels_and_reads_its_orientation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from PIL import ImageFile

    loads = []
    real_load = ImageFile.ImageFile.load

    def counted(image: ImageFile.ImageFile) -> object:
        loads.append(image.format)
        return real_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counted)
    plain = encode(Image.new("RGB", (300, 200)), "PNG")
    rotated = Image.new("RGB", (300, 200))
    exif = rotated.getexif()
    exif[0x0112] = 6  # Pillow writes the eXIf chunk before the pixels
    assert probe_image(plain) == ("PNG", 300, 200)
    assert probe_image(encode(rotated, "PNG", exif=exif)) == ("PNG", 200, 300)
    assert loads == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty_image"),
        (b"this is not an image at all", "undecodable_image"),
        (b"%PDF-1.7\n" + bytes(200), "undecodable_image"),
    ],
    ids=["empty", "text", "pdf"],
)
def test_non_images_are_rejected(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError) as caught:
        decode_image(data)
    assert caught.value.reason == reason
    with pytest.raises(ImageError):
        probe_image(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_is_reported_as_truncated(fmt: str) -> None:
    whole = encode(Image.effect_noise((200, 200), 60).convert("RGB"), fmt)
    with pytest.raises(ImageError) as caught:
        decode_image(whole[: len(whole) // 2])
    assert caught.value.reason == "truncated_image"
    assert "complete file" in str(caught.value)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = encode(Image.new("1", (10_000, 10_000)), "PNG")  # ~12 kB declaring 100 M pixels
    assert len(bomb) < 50_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's bomb warning must not escape either
        with pytest.raises(ImageError) as caught:
            decode_image(bomb)
    assert caught.value.reason == "decompression_bomb"


def test_per_call_pixel_limit_leaves_pillow_global_alone() -> None:
    before = Image.MAX_IMAGE_PIXELS
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageError) as caught:
        decode_image(data, max_pixels=5_000)
    assert caught.value.reason == "decompression_bomb"
    assert before == Image.MAX_IMAGE_PIXELS
    assert decode_image(data).size == (100, 100)


def test_file_over_the_byte_limit_is_too_large() -> None:
    with pytest.raises(ImageError) as caught:
        decode_image(noise_jpeg(), max_bytes=100)
    assert caught.value.reason == "image_too_large"
    assert "100" in str(caught.value)


def test_side_over_the_limit_is_too_large() -> None:
    data = encode(Image.new("1", (20_000, 2)), "PNG")
    with pytest.raises(ImageError) as caught:
        probe_image(data)
    assert caught.value.reason == "image_too_large"


def test_imageio_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, serving.imageio; "
        "sys.exit('torch' in sys.modules or 'transformers' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0

"""The SDXL invisible watermark: found where the SDXL encoder put it, nowhere else."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from aigis.samples import photo
from serving.torchserve.watermark import embed_sdxl_watermark, read_watermark

pytestmark = pytest.mark.unit

LIMIT = 4096 * 4096


def _through_png(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def test_a_watermarked_image_names_sdxl_and_a_plain_one_nothing() -> None:
    image = photo(5, (640, 512))
    signal = read_watermark(_through_png(embed_sdxl_watermark(image)), LIMIT)
    assert signal == {
        "kind": "sd_watermark",
        "value": "SDXL invisible watermark, 48 of 48 bits",
        "generator": "sdxl",
        "strength": "claimed",
    }
    assert read_watermark(image, LIMIT) is None


def test_small_and_over_limit_images_are_not_read() -> None:
    marked = _through_png(embed_sdxl_watermark(photo(6, (512, 512))))
    assert read_watermark(marked.resize((256, 256)), LIMIT) is None
    assert read_watermark(marked, 512 * 511) is None

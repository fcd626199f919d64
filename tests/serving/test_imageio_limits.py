"""serving.imageio under hostile input: refused on the header when it can be."""

from __future__ import annotations

import io
import time
import tracemalloc

import pytest
from PIL import Image, ImageFile

from schemas.limits import MAX_IMAGE_ASPECT_RATIO
from serving.errors import ImageError
from serving.imageio import decode_image, probe_image

pytestmark = pytest.mark.unit


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("size", [(16_384, 1), (1, 16_384), (4_000, 100), (21, 1)])
def test_extreme_aspect_ratio_is_refused_on_the_header(
    size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = encode(Image.new("RGB", size), "PNG")

    def never(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")  # would surface as undecodable_image

    probe_image(encode(Image.new("RGB", (2, 2)), "PNG"))  # plugins are imported once, not here
    monkeypatch.setattr(ImageFile.ImageFile, "load", never)
    tracemalloc.start()
    started = time.monotonic()
    for read in (probe_image, decode_image):
        with pytest.raises(ImageError) as caught:
            read(data)
        assert caught.value.reason == "extreme_aspect_ratio"
    elapsed = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 0.5
    assert peak < 2**20
    assert f"{size[0]}x{size[1]}" in str(caught.value)


def test_aspect_ratio_at_the_limit_passes_and_the_limit_is_a_parameter() -> None:
    wide = encode(Image.new("RGB", (int(MAX_IMAGE_ASPECT_RATIO) * 3, 3)), "PNG")
    assert decode_image(wide).size == (int(MAX_IMAGE_ASPECT_RATIO) * 3, 3)
    with pytest.raises(ImageError) as caught:
        probe_image(wide, max_aspect_ratio=4)
    assert caught.value.reason == "extreme_aspect_ratio"
    banner = encode(Image.new("RGB", (970, 90)), "PNG")  # the widest common web banner
    assert probe_image(banner) == ("PNG", 970, 90)

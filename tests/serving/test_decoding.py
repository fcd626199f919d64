"""The handler's image reader: order, failures, how far it reads ahead, what decodes at once."""

from __future__ import annotations

import io
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest
from PIL import Image

from serving import imageio
from serving.model.config import PreprocessConfig
from serving.model.pixels import PixelPipeline
from serving.torchserve import decoding
from serving.torchserve.decoding import ImageReader
from serving.torchserve.handler import HandlerSettings
from serving.torchserve.items import Item

pytestmark = pytest.mark.unit

SETTINGS = HandlerSettings()


def png(size: tuple[int, int], colour: tuple[int, int, int] = (10, 90, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_items_come_back_in_order_each_with_its_image_or_its_failure() -> None:
    def prepare(image: Image.Image) -> Any:
        if image.size == (13, 13):
            raise RuntimeError("kernel failed")
        return image.size

    reader = ImageReader(target_side=448, threads=2, prepare=prepare)
    items = [Item(data=png((40, 30))), Item(data=b"not an image"), Item(data=png((13, 13)))]
    items += [Item(data=png((20 + i, 20))) for i in range(5)]
    outcomes = list(reader.ahead(items, SETTINGS))
    assert [o.item for o in outcomes] == items
    assert [o.image for o in outcomes] == [(40, 30), None, None] + [(20 + i, 20) for i in range(5)]
    assert (items[1].error or {}).get("reason") == "undecodable_image"
    assert (outcomes[2].failure, items[2].error) == ("RuntimeError", None)  # the handler decides
    assert all(item.data is None for item in items)  # the bytes are released once read


def test_it_reads_at_most_threads_items_ahead_of_the_one_held() -> None:
    taken: list[int] = []

    def items() -> Iterator[Item]:
        for index in range(10):
            taken.append(index)
            yield Item(data=png((30, 30)))

    reader = ImageReader(target_side=448, threads=3)
    outcomes = reader.ahead(items(), SETTINGS)
    next(outcomes)
    assert len(taken) == 1 + 3
    next(outcomes)
    assert len(taken) == 2 + 3
    assert len(list(outcomes)) == 8  # the rest, none left decoding behind this test


def test_large_images_decode_one_at_a_time_and_small_ones_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Decodes run together only while their pixels sum to at most max_image_pixels."""
    running: list[int] = []
    peaks: list[int] = []
    lock = threading.Lock()
    real = decoding.decode_opened

    def decode(opened: Image.Image, **options: Any) -> Image.Image:
        image = real(opened, **options)
        with lock:
            running.append(image.width * image.height)
            peaks.append(sum(running))
        time.sleep(0.05)
        with lock:
            running.remove(image.width * image.height)
        return image

    monkeypatch.setattr(decoding, "decode_opened", decode)
    settings = replace(SETTINGS, max_image_pixels=10_000)
    reader = ImageReader(target_side=448, threads=4)
    list(reader.ahead([Item(data=png((90, 90))) for _ in range(4)], settings))  # 8,100 each
    assert max(peaks) == 8_100
    peaks.clear()
    list(reader.ahead([Item(data=png((40, 40))) for _ in range(4)], settings))  # 1,600 each
    assert max(peaks) > 1_600


def test_a_reader_left_early_waits_for_the_images_still_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running: list[int] = []
    real = decoding.decode_opened

    def decode(opened: Image.Image, **options: Any) -> Image.Image:
        running.append(1)
        time.sleep(0.05)
        running.pop()
        return real(opened, **options)

    monkeypatch.setattr(decoding, "decode_opened", decode)
    outcomes = ImageReader(target_side=448, threads=2).ahead(
        [Item(data=png((30, 30))) for _ in range(8)], SETTINGS
    )
    next(outcomes)
    outcomes.close()  # as when the batch's forward pass raised
    assert running == []


def test_decoding_and_cropping_on_threads_leave_the_warning_filters_as_they_were() -> None:
    """Each open turns Pillow's bomb warning into an error in a catch_warnings block, which
    changes the process's filters: one thread at a time opens, and cropping changes none, so
    no filter is lost or left behind."""
    before = list(warnings.filters)
    data = png((300, 200))
    crop = PixelPipeline(PreprocessConfig()).crop

    def read(_: int) -> None:
        crop(imageio.decode_image(data, target_side=448))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(read, range(600)))
    assert warnings.filters == before

"""The handler's reader for a model on a GPU, run on the CPU: headers checked first, JPEGs handed
to the device's decoder a group at a time (here a Pillow stand-in that, like torchvision's
decoder on cuda, gives images as stored), turned upright by their EXIF orientation, anything else
and any JPEG it refuses, mis-sizes or fails on read by the CPU reader, crops made as the CPU
pipeline makes them. bench/gpu.sh runs the real decoder on a GPU."""

from __future__ import annotations

import importlib.util
import io
import time
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from serving.model.config import PreprocessConfig
from serving.model.pixels import PixelPipeline
from serving.torchserve.decoding import ImageReader
from serving.torchserve.device_decoding import (
    DeviceImageReader,
    crop_on_device,
    device_decoder_works,
    upright,
)
from serving.torchserve.handler import HandlerSettings
from serving.torchserve.items import Item

CPU = torch.device("cpu")


def encoded(size: tuple[int, int], fmt: str, seed: int = 0, orientation: int = 1) -> bytes:
    coarse = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    with io.BytesIO() as buffer:
        image.save(buffer, format=fmt, exif=exif)
        return buffer.getvalue()


def cpu_crop(data: bytes) -> torch.Tensor:
    """The CPU reader's crop of ``data``: what every device crop must match."""
    image = ImageReader(PreprocessConfig().decode_side, 1, PixelPipeline(PreprocessConfig()).crop)
    crop: torch.Tensor = image.read(Item(data=data), HandlerSettings())
    return crop.float()


class PillowDecoder:
    """Stands in for the device's JPEG decoder: images as stored (no EXIF orientation), records
    each call, refuses what Pillow cannot decode; ``fail`` raises instead of decoding."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[int] = []
        self.fail = fail

    def __call__(self, datas: Sequence[bytes], device: torch.device) -> list[torch.Tensor | None]:
        self.calls.append(len(datas))
        if self.fail is not None:
            raise self.fail
        out: list[torch.Tensor | None] = []
        for data in datas:
            try:
                with Image.open(io.BytesIO(data)) as image:
                    pixels = np.array(image.convert("RGB"))
            except OSError:
                out.append(None)
                continue
            out.append(torch.from_numpy(pixels).permute(2, 0, 1).to(device))
        return out


def reader(decoder: PillowDecoder) -> DeviceImageReader:
    config = PreprocessConfig()
    return DeviceImageReader(config, 2, PixelPipeline(config).crop, CPU, decoder)


@pytest.mark.unit
def test_items_come_back_in_order_with_crops_as_the_cpu_makes_them_or_their_failure() -> None:
    decoder = PillowDecoder()
    jpeg, png = encoded((640, 480), "JPEG"), encoded((300, 500), "PNG", seed=1)
    truncated = jpeg[: len(jpeg) // 3]
    items = [Item(data=d) for d in (jpeg, b"not an image", png, truncated, jpeg)]
    decoded = list(reader(decoder).ahead(items, HandlerSettings()))
    assert all(d.item is item for d, item in zip(decoded, items, strict=True))
    # The two whole JPEGs in one call; the bad bytes and the truncated JPEG (no end-of-image
    # marker: the device's decoder might fill it in) never reach it.
    assert decoder.calls == [2]
    assert items[1].error is not None
    assert items[1].error["reason"] == "undecodable_image"
    assert items[3].error is not None
    assert items[3].error["reason"] == "truncated_image"
    for index, data in [(0, jpeg), (2, png), (4, jpeg)]:
        crop = decoded[index].image
        assert crop is not None
        assert crop.shape == (3, 224, 224)
        assert float((crop.float() - cpu_crop(data)).abs().max()) <= 2.0  # grey levels
        assert items[index].data is None  # the bytes are released once decoded


@pytest.mark.unit
def test_a_group_holds_at_most_a_forward_batch_and_the_decoded_budget() -> None:
    jpeg = encoded((640, 480), "JPEG")  # 0.9 MB of RGB once decoded
    decoder = PillowDecoder()
    settings = HandlerSettings(max_forward_batch=4)
    decoded = list(reader(decoder).ahead([Item(data=jpeg) for _ in range(10)], settings))
    assert decoder.calls == [4, 4, 2]
    decoder = PillowDecoder()
    settings = HandlerSettings(max_forward_batch=64, device_decoded_mb=2)
    decoded += list(reader(decoder).ahead([Item(data=jpeg) for _ in range(5)], settings))
    assert decoder.calls == [2, 2, 1]
    assert all(d.image is not None for d in decoded)


@pytest.mark.unit
def test_refused_items_do_not_stretch_a_group_past_a_forward_batch() -> None:
    jpeg = encoded((64, 48), "JPEG")
    decoder = PillowDecoder()
    datas = [jpeg] * 3 + [b"bad"] * 2 + [jpeg] * 10
    items = [Item(data=data) for data in datas]
    decoded = list(reader(decoder).ahead(items, HandlerSettings(max_forward_batch=4)))
    assert all(d.item is item for d, item in zip(decoded, items, strict=True))
    assert max(decoder.calls) <= 4
    assert sum(decoder.calls) == 13


@pytest.mark.unit
def test_the_start_up_check_says_why_the_device_cannot_decode() -> None:
    reason = device_decoder_works(CPU)
    if importlib.util.find_spec("torchvision") is None:
        assert reason == "torchvision is not installed"
    else:
        assert reason == ""  # torchvision's decoder reads JPEGs on the CPU too


@pytest.mark.unit
def test_images_of_one_size_are_resized_together_as_each_would_be_alone() -> None:
    rng = np.random.default_rng(2)
    config = PreprocessConfig()
    images = torch.from_numpy(rng.integers(0, 256, (3, 3, 480, 640), dtype=np.uint8))
    together = crop_on_device(images, config)
    assert together.shape == (3, 3, 224, 224)
    for index in range(3):
        alone = crop_on_device(images[index : index + 1], config)[0]
        assert torch.equal(together[index], alone)


@pytest.mark.unit
@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_jpeg_is_turned_upright_by_its_exif_orientation_as_on_the_cpu(orientation: int) -> None:
    data = encoded((640, 480), "JPEG", seed=3, orientation=orientation)
    decoder = PillowDecoder()

    def no_cpu_crop(image: Image.Image) -> torch.Tensor:
        raise AssertionError("the device's crop was expected, not the CPU reader's")

    config = PreprocessConfig()
    device_reader = DeviceImageReader(config, 2, no_cpu_crop, CPU, decoder)
    [decoded] = list(device_reader.ahead([Item(data=data)], HandlerSettings()))
    assert decoder.calls == [1]
    assert decoded.image is not None
    assert float((decoded.image.float() - cpu_crop(data)).abs().max()) <= 2.0


@pytest.mark.unit
@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_turns_levels_as_pillows_exif_transpose_does(orientation: int) -> None:
    levels = np.random.default_rng(4).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    with io.BytesIO() as buffer:  # PNG: lossless, and Pillow writes its EXIF
        Image.fromarray(levels).save(buffer, format="PNG", exif=exif)
        buffer.seek(0)
        with Image.open(buffer) as stored:
            expected = np.asarray(ImageOps.exif_transpose(stored))
    turned = upright(torch.from_numpy(levels).permute(2, 0, 1), orientation)
    assert np.array_equal(turned.permute(1, 2, 0).numpy(), expected)


@pytest.mark.unit
def test_what_the_device_mis_sizes_or_fails_on_the_cpu_reader_reads() -> None:
    jpeg = encoded((640, 480), "JPEG")
    expected = cpu_crop(jpeg)

    def wrong_size(datas: Sequence[bytes], device: torch.device) -> list[torch.Tensor | None]:
        return [torch.zeros((3, 16000, 16), dtype=torch.uint8) for _ in datas]

    config = PreprocessConfig()
    for decoder in (wrong_size, PillowDecoder(fail=torch.OutOfMemoryError("device full"))):
        mis = DeviceImageReader(config, 2, PixelPipeline(config).crop, CPU, decoder)
        items = [Item(data=jpeg), Item(data=jpeg)]
        decoded = list(mis.ahead(items, HandlerSettings()))
        assert [d.failure for d in decoded] == ["", ""]
        for d in decoded:
            assert d.image is not None
            assert float((d.image.float() - expected).abs().max()) <= 2.0


@pytest.mark.unit
def test_a_reader_left_early_leaves_nothing_decoding() -> None:
    config = PreprocessConfig()
    pipeline = PixelPipeline(config)
    prepared: list[float] = []

    def prepare(image: Image.Image) -> torch.Tensor:
        time.sleep(0.05)
        prepared.append(time.monotonic())
        return pipeline.crop(image)

    png = encoded((256, 256), "PNG")
    device_reader = DeviceImageReader(config, 2, prepare, CPU, PillowDecoder())
    decoding = device_reader.ahead([Item(data=png) for _ in range(16)], HandlerSettings())
    next(decoding)
    decoding.close()
    stopped = time.monotonic()
    time.sleep(0.3)
    assert all(at <= stopped for at in prepared)  # nothing of the batch went on after close
    assert len(prepared) < 16

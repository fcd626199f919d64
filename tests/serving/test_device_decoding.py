"""The handler's reader for a model on a GPU, run on the CPU: headers checked first, JPEGs handed
to the device's decoder a group at a time (here a Pillow stand-in: torchvision's decoder needs a
GPU build to matter), anything else and any JPEG it refuses read by the CPU reader, crops made as
the CPU pipeline makes them. bench/gpu.sh runs the real decoder on a GPU."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from PIL import Image

from serving.model.config import PreprocessConfig
from serving.model.pixels import PixelPipeline
from serving.torchserve.device_decoding import DeviceImageReader, crop_on_device
from serving.torchserve.handler import HandlerSettings
from serving.torchserve.items import Item

CPU = torch.device("cpu")


def encoded(size: tuple[int, int], fmt: str, seed: int = 0) -> bytes:
    coarse = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
    with io.BytesIO() as buffer:
        image.save(buffer, format=fmt)
        return buffer.getvalue()


class PillowDecoder:
    """Stands in for the device's JPEG decoder: records each call, refuses truncated files."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, datas: Sequence[bytes], device: torch.device) -> list[torch.Tensor | None]:
        self.calls.append(len(datas))
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
    assert decoder.calls == [3]  # the three JPEGs, in one call; the bad bytes never reach it
    assert items[1].error is not None
    assert items[1].error["reason"] == "undecodable_image"
    assert items[3].error is not None
    assert items[3].error["reason"] == "truncated_image"
    pipeline = PixelPipeline(PreprocessConfig())
    for index, data in [(0, jpeg), (2, png), (4, jpeg)]:
        crop = decoded[index].image
        assert crop is not None
        assert crop.shape == (3, 224, 224)
        with Image.open(io.BytesIO(data)) as image:
            expected = pipeline.crop(image.convert("RGB")).float()
        assert float((crop.float() - expected).abs().max()) <= 2.0  # grey levels
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
def test_the_pixel_pipeline_takes_crops_and_makes_its_batch_where_they_are() -> None:
    config = PreprocessConfig()
    crop = torch.full((3, 224, 224), 128.0)
    batch = PixelPipeline(config)([crop, crop])
    assert batch.shape == (2, 3, 224, 224)
    assert batch.device == crop.device
    assert torch.allclose(batch[0], batch[1])

"""The handler's images on a GPU: JPEGs decoded by the device and cropped there.

On a GPU the model no longer bounds a worker: the base model scores 256 images in about 8 ms on
an H200, less than Pillow takes to decode a few 1024-pixel JPEGs. :class:`DeviceImageReader`
gives the handler what :class:`~serving.torchserve.decoding.ImageReader` gives it (``ahead``
yields the items in order with their crops), a group of items at a time:

1. every header is read and checked on the CPU first, within the archive's limits
   (:func:`serving.imageio.probe_image`): a bad item fails alone before any pixel is decoded;
2. the group's JPEGs are decoded in one batched call of the device's decoder
   (``torchvision.io.decode_jpeg``, EXIF orientation applied); every other format, and any JPEG
   the device's decoder refuses, is read by the CPU reader on its threads (which then has the
   last word on the image);
3. the crops are made on the device, resized as :class:`serving.model.pixels.PixelPipeline`
   resizes them (antialiased bicubic, rounded to 8-bit levels; images of one size in one call).

A group holds at most ``max_forward_batch`` items and, by their headers, at most
``device_decoded_mb`` of decoded RGB (or one image): what the device decodes at once stays
within that budget. The next group's headers are read on a thread of their own while a group
decodes and is scored (the header checks are a third of a batch's time on an H200). The
watermark, when the archive reads it, is read on the CPU threads from the encoded bytes, as the
CPU reader reads it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F  # noqa: N812  (torch's own spelling)

from serving.errors import ImageError
from serving.imageio import probe_image
from serving.model.config import PreprocessConfig
from serving.model.pixels import resized_size
from serving.torchserve.decoding import Decoded, ImageReader, add_watermark_signal, outcome
from serving.torchserve.items import Item

if TYPE_CHECKING:
    from serving.torchserve.handler import HandlerSettings

__all__ = [
    "DeviceImageReader",
    "crop_on_device",
    "decode_jpegs_on_device",
    "device_decoding_available",
]

_JPEG_FORMATS = frozenset({"JPEG", "MPO"})


class DeviceImageReader(ImageReader):
    """An :class:`ImageReader` for a model on ``device`` (cuda): JPEGs are decoded there."""

    def __init__(
        self,
        preprocess: PreprocessConfig,
        threads: int,
        prepare: Callable[[Any], Any],
        device: torch.device,
        decode_jpegs: Callable[[Sequence[bytes], torch.device], list[torch.Tensor | None]]
        | None = None,
    ) -> None:
        """``prepare``: the model's own crop of an image the CPU decoded (moved to the device
        after it). ``decode_jpegs``: the device's JPEG decoder (default
        :func:`decode_jpegs_on_device`)."""
        super().__init__(preprocess.decode_side, threads, prepare)
        self.preprocess = preprocess
        self.device = device
        self.decode_jpegs = decode_jpegs or decode_jpegs_on_device
        self._headers = ThreadPoolExecutor(1, thread_name_prefix="aigis-headers")

    def ahead(self, items: Iterable[Item], settings: HandlerSettings) -> Iterator[Decoded]:
        """Each of ``items`` with its crop on the device (or None when it failed), in order.
        The next group's headers are read on a thread while this group decodes and is scored."""
        groups = self._groups(items, settings)
        upcoming = self._headers.submit(next, groups, None)
        try:
            while (group := upcoming.result()) is not None:
                upcoming = self._headers.submit(next, groups, None)
                yield from self._group(group, settings)
        finally:  # the caller stopped early: the header thread is done with its items too
            wait([upcoming])

    def _groups(
        self, items: Iterable[Item], settings: HandlerSettings
    ) -> Iterator[list[tuple[Item, str]]]:
        """``items`` in groups to decode together, each item with its format ("": its header
        was refused, the item failed)."""
        budget = settings.device_decoded_mb * 2**20
        group: list[tuple[Item, str]] = []
        held = 0
        for item in items:
            try:
                fmt, width, height = probe_image(
                    item.data or b"",
                    max_bytes=settings.max_image_bytes,
                    max_pixels=settings.max_image_pixels,
                    max_aspect_ratio=settings.max_image_aspect_ratio,
                )
            except ImageError as exc:
                item.fail(exc.reason, exc.detail)
                group.append((item, ""))  # answered in its place, nothing to decode
                continue
            cost = 3 * width * height
            if group and (len(group) == settings.max_forward_batch or held + cost > budget):
                yield group
                group, held = [], 0
            group.append((item, fmt))
            held += cost
        if group:
            yield group

    def _group(self, group: list[tuple[Item, str]], settings: HandlerSettings) -> Iterator[Decoded]:
        on_cpu: dict[int, Future[Any]] = {}
        jpegs: list[int] = []
        for index, (item, fmt) in enumerate(group):
            if fmt in _JPEG_FORMATS:
                jpegs.append(index)
            elif fmt:
                on_cpu[index] = self._pool.submit(self.read, item, settings)
        levels: dict[int, torch.Tensor] = {}
        marks: list[Future[None]] = []
        if jpegs:
            datas = [group[index][0].data or b"" for index in jpegs]
            for index, data, image in zip(
                jpegs, datas, self.decode_jpegs(datas, self.device), strict=True
            ):
                item = group[index][0]
                if image is None:  # the device's decoder refused it: the CPU reader decides
                    on_cpu[index] = self._pool.submit(self.read, item, settings)
                    continue
                levels[index], item.data = image, None
                if settings.watermark:
                    marks.append(self._pool.submit(add_watermark_signal, item, data, settings))
        crops = self._crops(levels)
        wait(marks)
        for index, (item, _) in enumerate(group):
            if index in crops:
                yield Decoded(item, crops[index])
                continue
            if index not in on_cpu:  # its header was refused
                yield Decoded(item, None)
                continue
            decoded = outcome(item, on_cpu[index])
            if decoded.image is None:
                yield decoded
            else:
                yield Decoded(item, decoded.image.to(self.device, non_blocking=True))

    def _crops(self, levels: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Each image's crop, images of one size resized together."""
        by_size: dict[tuple[int, ...], list[int]] = {}
        for index, image in levels.items():
            by_size.setdefault(tuple(image.shape), []).append(index)
        crops: dict[int, torch.Tensor] = {}
        for indexes in by_size.values():
            stacked = torch.stack([levels[index] for index in indexes])
            crops.update(zip(indexes, crop_on_device(stacked, self.preprocess), strict=True))
        return crops


def crop_on_device(levels: torch.Tensor, preprocess: PreprocessConfig) -> torch.Tensor:
    """(N, 3, H, W) uint8 images of one size to their float centre squares (N, 3, side, side),
    resized as :class:`serving.model.pixels.PixelPipeline` resizes them (antialiased bicubic,
    rounded to 8-bit levels), on whichever device they are."""
    side = preprocess.image_size
    height, width = int(levels.shape[-2]), int(levels.shape[-1])
    new_width, new_height = resized_size(width, height, side)
    image = levels.float()
    if (new_width, new_height) != (width, height):
        image = (
            F.interpolate(image, size=(new_height, new_width), mode="bicubic", antialias=True)
            .clamp_(0, 255)
            .round_()
        )
    top, left = (new_height - side) // 2, (new_width - side) // 2
    return image[:, :, top : top + side, left : left + side]


def decode_jpegs_on_device(
    datas: Sequence[bytes], device: torch.device
) -> list[torch.Tensor | None]:
    """(3, H, W) uint8 images on ``device`` by torchvision's batched decoder (nvJPEG on cuda);
    None for a JPEG it refused."""
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():  # decode_jpeg only reads: the bytes need no copy
        warnings.filterwarnings("ignore", message="The given buffer is not writable")
        data = [torch.frombuffer(item, dtype=torch.uint8) for item in datas]
    options: dict[str, Any] = {
        "mode": ImageReadMode.RGB,
        "device": device,
        "apply_exif_orientation": True,
    }
    try:
        return list(decode_jpeg(data, **options))
    except RuntimeError:  # one bad JPEG fails the batched call: decode them one by one
        pass
    single: list[torch.Tensor | None] = []
    for item in data:
        try:
            single.append(decode_jpeg(item, **options))
        except RuntimeError:
            single.append(None)
    return single


def device_decoding_available() -> bool:
    """Whether torchvision, whose decoder reads JPEGs on the GPU, is installed."""
    import importlib.util

    return importlib.util.find_spec("torchvision") is not None

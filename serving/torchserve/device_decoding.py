"""The handler's images on a GPU: JPEGs decoded by the device and cropped there.

On a GPU the model no longer bounds a worker: the base model scores 256 images in about 8 ms on
an H200, less than Pillow takes to decode a few 1024-pixel JPEGs. :class:`DeviceImageReader`
gives the handler what :class:`~serving.torchserve.decoding.ImageReader` gives it (``ahead``
yields the items in order with their crops), a group of items at a time:

1. every header is read and checked on the CPU first, within the archive's limits
   (:func:`serving.imageio.read_header`): a bad item fails alone before any pixel is decoded;
2. the group's JPEGs are decoded in one batched call of the device's decoder
   (``torchvision.io.decode_jpeg``), and each is turned upright by its EXIF orientation on the
   device (torchvision applies it on the CPU only);
3. the crops are made on the device, resized as :class:`serving.model.pixels.PixelPipeline`
   resizes them (antialiased bicubic, rounded to 8-bit levels; images of one size together).

The CPU reader, on its threads, reads every other format and every JPEG the device should not
be trusted with or failed on: one whose bytes do not end with the end-of-image marker (a
truncated file, which the device's decoder might fill in rather than refuse), one the decoder
refused, one whose decoded size is not its header's, and a whole group when the device raised
(out of memory, say). The CPU reader then has the last word, so an item fails alone as on a CPU.

A group holds at most ``max_forward_batch`` items and, by their headers, JPEGs of at most
``device_decoded_mb`` of decoded RGB (or one image). On top of that, turning an image upright
copies it (one image at a time), and cropping converts at most 16 images of one size to float,
four bytes a level. The next group's headers are read on a
thread of their own while a group decodes and is scored (the header checks are a third of a
batch's time on an H200). The watermark, when the archive reads it, is read on the CPU threads
from the encoded bytes, as the CPU reader reads it.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F  # noqa: N812  (torch's own spelling)

from serving.errors import ImageError
from serving.imageio import ImageHeader, read_header
from serving.model.config import PreprocessConfig
from serving.model.pixels import resized_size
from serving.torchserve.decoding import Decoded, ImageReader, add_watermark_signal, outcome
from serving.torchserve.items import Item

if TYPE_CHECKING:
    from serving.torchserve.handler import HandlerSettings

__all__ = [
    "DeviceImageReader",
    "JpegDecoder",
    "crop_on_device",
    "decode_jpegs_on_device",
    "device_decoder_works",
    "upright",
]

log = logging.getLogger(__name__)

# The device's decoder reads the encoded bytes in place and never writes to them; torch warns
# when it wraps read-only memory. Filtered once here, as serving.model.pixels does: a
# ``warnings.catch_warnings`` block per call would race the decoding threads' own blocks.
warnings.filterwarnings("ignore", message="The given buffer is not writable")

_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_END_OF_IMAGE = b"\xff\xd9"
_CROP_CHUNK = 16
"""Images of one size resized in one call at most (each a float copy of its full size)."""

JpegDecoder = Callable[[Sequence[bytes], torch.device], list[torch.Tensor | None]]


@dataclass
class _Entry:
    item: Item
    header: ImageHeader | None = None
    """None when the header was refused (the item has failed) or could not be read (the CPU
    reader reads it again and answers for it)."""

    def for_device(self) -> bool:
        data = self.item.data or b""
        return (
            self.header is not None
            and self.header.format in _JPEG_FORMATS
            and data.rstrip(b"\0").endswith(_END_OF_IMAGE)
        )


class DeviceImageReader(ImageReader):
    """An :class:`ImageReader` for a model on ``device`` (cuda): JPEGs are decoded there."""

    def __init__(
        self,
        preprocess: PreprocessConfig,
        threads: int,
        prepare: Callable[[Any], Any],
        device: torch.device,
        decode_jpegs: JpegDecoder | None = None,
    ) -> None:
        """``prepare``: the model's own crop of an image the CPU decoded (moved to the device
        after it). ``decode_jpegs``: the device's JPEG decoder, images as stored (default
        :func:`decode_jpegs_on_device`)."""
        super().__init__(preprocess.decode_side, threads, prepare)
        self.preprocess = preprocess
        self.device = device
        self.decode_jpegs = decode_jpegs or decode_jpegs_on_device
        self._headers = ThreadPoolExecutor(1, thread_name_prefix="aigis-headers")

    def ahead(
        self, items: Iterable[Item], settings: HandlerSettings
    ) -> Generator[Decoded, None, None]:
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

    def _groups(self, items: Iterable[Item], settings: HandlerSettings) -> Iterator[list[_Entry]]:
        """``items`` with their headers, in groups to decode together."""
        budget = settings.device_decoded_mb * 2**20
        group: list[_Entry] = []
        held = 0
        for item in items:
            header: ImageHeader | None = None
            try:
                header = read_header(
                    item.data or b"",
                    max_bytes=settings.max_image_bytes,
                    max_pixels=settings.max_image_pixels,
                    max_aspect_ratio=settings.max_image_aspect_ratio,
                )
            except ImageError as exc:
                item.fail(exc.reason, exc.detail)  # answered in its place, nothing to decode
            except Exception:  # MemoryError included: the CPU reader reads it again and answers
                header = None
            entry = _Entry(item, header)
            cost = 3 * header.width * header.height if header and entry.for_device() else 0
            if group and (len(group) >= settings.max_forward_batch or held + cost > budget):
                yield group
                group, held = [], 0
            group.append(entry)
            held += cost
        if group:
            yield group

    def _group(self, group: list[_Entry], settings: HandlerSettings) -> Iterator[Decoded]:
        on_cpu: dict[int, Future[Any]] = {}
        marks: list[Future[None]] = []
        try:
            device = [i for i, entry in enumerate(group) if entry.for_device()]
            for index, entry in enumerate(group):  # first, so that they decode meanwhile
                if index not in device and entry.item.error is None:
                    on_cpu[index] = self._pool.submit(self.read, entry.item, settings)
            crops = self._on_device(group, device, settings, marks) if device else {}
            for index in device:
                if index not in crops:  # what the device refused, mis-sized or failed on
                    on_cpu[index] = self._pool.submit(self.read, group[index].item, settings)
            wait(marks)
            for index, entry in enumerate(group):
                if index in crops:
                    yield Decoded(entry.item, crops.pop(index))
                elif index not in on_cpu:  # its header was refused
                    yield Decoded(entry.item, None)
                else:
                    yield self._moved(outcome(entry.item, on_cpu[index]))
        finally:  # the caller stopped early: nothing of this group goes on decoding
            pending = [*on_cpu.values(), *marks]
            for future in pending:
                future.cancel()
            wait(pending)

    def _moved(self, decoded: Decoded) -> Decoded:
        """``decoded``'s crop, made by the CPU reader, moved to the device."""
        if decoded.image is None:
            return decoded
        try:
            return Decoded(decoded.item, decoded.image.to(self.device, non_blocking=True))
        except Exception as exc:  # out of memory on the device, say: this item alone fails
            log.exception("moving one image to %s failed", self.device)
            return Decoded(decoded.item, None, type(exc).__name__)

    def _on_device(
        self,
        group: list[_Entry],
        indexes: list[int],
        settings: HandlerSettings,
        marks: list[Future[None]],
    ) -> dict[int, torch.Tensor]:
        """The crops of the JPEGs at ``indexes`` that the device decoded as their headers say
        (their bytes released, their watermarks being read into ``marks``); the others are left
        to the CPU reader. A failure of the device leaves them all to it."""
        try:
            datas = [group[index].item.data or b"" for index in indexes]
            images = self.decode_jpegs(datas, self.device)
            levels: dict[int, torch.Tensor] = {}
            for position, index in enumerate(indexes):
                image, images[position] = images[position], None  # one copy of it at a time
                header = group[index].header
                if image is None or header is None:
                    continue
                height, width = int(image.shape[-2]), int(image.shape[-1])
                if (width, height) == header.stored_size:  # else the CPU reader decides
                    levels[index] = upright(image, header.orientation)
            crops = self._crops(levels)
            del levels
        except Exception:  # out of memory on the device, say: the CPU reader reads the group
            log.exception(
                "decoding %d JPEGs on %s failed; the CPU reads them", len(indexes), self.device
            )
            return {}
        for index in crops:
            item = group[index].item
            data, item.data = item.data or b"", None
            if settings.watermark:
                marks.append(self._pool.submit(add_watermark_signal, item, data, settings))
        return crops

    def _crops(self, levels: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Each image's crop, images of one size resized together, a chunk at a time."""
        by_size: dict[tuple[int, ...], list[int]] = {}
        for index, image in levels.items():
            by_size.setdefault(tuple(image.shape), []).append(index)
        crops: dict[int, torch.Tensor] = {}
        for indexes in by_size.values():
            for start in range(0, len(indexes), _CROP_CHUNK):
                chunk = indexes[start : start + _CROP_CHUNK]
                stacked = torch.stack([levels[index] for index in chunk])
                # contiguous: the crops then hold their squares, not the whole resized images
                squares = crop_on_device(stacked, self.preprocess).contiguous()
                crops.update(zip(chunk, squares, strict=True))
        return crops


def upright(levels: torch.Tensor, orientation: int) -> torch.Tensor:
    """(3, H, W) ``levels`` as stored, turned as EXIF ``orientation`` says (as Pillow's
    transposes in serving.imageio turn them); an unknown orientation leaves them as they are."""
    rows, columns = -2, -1
    match orientation:
        case 2:
            return levels.flip(columns)
        case 3:
            return levels.flip(rows, columns)
        case 4:
            return levels.flip(rows)
        case 5:
            return levels.transpose(rows, columns)
        case 6:
            return torch.rot90(levels, -1, dims=(rows, columns))
        case 7:
            return levels.transpose(rows, columns).flip(rows, columns)
        case 8:
            return torch.rot90(levels, 1, dims=(rows, columns))
    return levels


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
    """(3, H, W) uint8 images as stored (EXIF orientation not applied) on ``device`` by
    torchvision's batched decoder (nvJPEG on cuda); None for a JPEG it refused."""
    from torchvision.io import ImageReadMode, decode_jpeg

    data = [torch.frombuffer(item, dtype=torch.uint8) for item in datas]  # no copy: only read
    options: dict[str, Any] = {"mode": ImageReadMode.RGB, "device": device}
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


def device_decoder_works(device: torch.device) -> str:
    """Why JPEGs cannot be decoded on ``device`` ("" when they can): torchvision missing, or
    its decoder failing on a small JPEG made here."""
    if importlib.util.find_spec("torchvision") is None:
        return "torchvision is not installed"
    from PIL import Image

    with io.BytesIO() as buffer:
        Image.new("RGB", (16, 8), (200, 30, 90)).save(buffer, format="JPEG")
        data = buffer.getvalue()
    try:
        from torchvision.io import ImageReadMode, decode_jpeg

        encoded = torch.frombuffer(data, dtype=torch.uint8)
        image = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
    except Exception as exc:  # an extension that does not load raises all sorts
        return f"torchvision's decoder failed: {type(exc).__name__}: {exc}"
    if tuple(image.shape) != (3, 8, 16):
        return f"torchvision's decoder read a 16x8 JPEG as {tuple(image.shape)}"
    return ""

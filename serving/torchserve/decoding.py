"""The handler's images, decoded on a few threads ahead of the forward pass that needs them.

On a CPU, decoding is a large part of each item's time (a 256-pixel PNG takes longer to inflate
than the tiny model takes to score it), and Pillow's decoders release the GIL while they work: on
a worker given two cores, two images decode at once. :class:`ImageReader` decodes one item's
bytes within the archive's limits, reduced for the model (and reads its watermark when the
archive asks); :meth:`ImageReader.ahead` yields the items in order with their images while at most
``threads`` more decode behind them, so the handler's budget for decoded images is overrun by
those few at most. Each image is also cropped there (the model's ``prepare``, torch releasing
the GIL too), so the forward pass starts from 8-bit crops. Images are decoded and cropped at
once only while their pixels, read from their headers, sum to at most ``max_image_pixels`` (one
image is always admitted): the full-size buffers of decoding stay within what one image at the
limit needs, whatever the number of threads.

Reading an image touches only its own item and the model's ``prepare`` (safe on any thread): the
forward pass runs on the caller's thread. A caller that stops early (its batch failed) waits for
the images still decoding, so none outlives its batch.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from serving.errors import ImageError
from serving.imageio import decode_image, decode_opened, open_image
from serving.torchserve.items import Item
from serving.torchserve.watermark import read_watermark

if TYPE_CHECKING:
    from serving.torchserve.handler import HandlerSettings

__all__ = ["Decoded", "ImageReader", "add_watermark_signal", "outcome"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decoded:
    """One item's outcome: its image, or None when it failed (its ``error`` says why) or when
    decoding raised something other than ImageError (``failure`` names it)."""

    item: Item
    image: Any
    """What the model's ``prepare`` made of the image (a crop tensor, or the image itself)."""
    failure: str = ""
    """The exception's type: the handler tells whether the item or the server is at fault."""

    @property
    def held(self) -> int:
        """Bytes the image holds while it waits for its forward pass."""
        image = self.image
        if image is None:
            return 0
        if isinstance(image, Image.Image):
            return image.width * image.height * len(image.getbands())
        return int(image.nbytes)


class ImageReader:
    """Decodes items' images for a model whose pre-processing starts from ``target_side`` and
    hands each to ``prepare``."""

    def __init__(
        self,
        target_side: int,
        threads: int,
        prepare: Callable[[Image.Image], Any] = lambda image: image,
    ) -> None:
        self.target_side = target_side
        self.prepare = prepare
        self.threads = max(1, threads)
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="aigis-decode")
        self._decoding = _PixelBudget()

    def ahead(
        self, items: Iterable[Item], settings: HandlerSettings
    ) -> Generator[Decoded, None, None]:
        """Each of ``items`` with its image read under ``settings``, in order; up to
        ``threads`` more items decode while the caller holds one."""
        pending: deque[tuple[Item, Future[Any]]] = deque()
        try:
            for item in items:
                pending.append((item, self._pool.submit(self.read, item, settings)))
                if len(pending) > self.threads:
                    yield outcome(*pending.popleft())
            while pending:
                yield outcome(*pending.popleft())
        finally:  # the caller stopped early: nothing of its batch goes on decoding
            for _, future in pending:
                future.cancel()
            wait([future for _, future in pending])

    def read(self, item: Item, settings: HandlerSettings) -> Any:
        """``item``'s image, decoded, reduced and prepared for the model; its bytes are released.
        Raises ImageError for a bad image; the watermark, when read, joins the item's signals."""
        data, item.data = item.data or b"", None
        limits = {
            "max_bytes": settings.max_image_bytes,
            "max_pixels": settings.max_image_pixels,
            "max_aspect_ratio": settings.max_image_aspect_ratio,
        }
        image = open_image(data, **limits)  # the header: its size, nothing decoded yet
        with self._decoding.taken(image.width * image.height, settings.max_image_pixels):
            if settings.watermark:
                add_watermark_signal(item, data, settings)
            # An image under twice the target side is not reduced: it is held whole until cropped.
            return self.prepare(decode_opened(image, target_side=self.target_side))


def add_watermark_signal(item: Item, data: bytes, settings: HandlerSettings) -> None:
    """Add the watermark signal of ``data`` to ``item``; a failure costs the signal only."""
    try:
        full = decode_image(
            data,
            max_bytes=settings.max_image_bytes,
            max_pixels=min(settings.max_image_pixels, settings.watermark_max_pixels),
            max_aspect_ratio=settings.max_image_aspect_ratio,
        )
        signal = read_watermark(full, settings.watermark_max_pixels)
    except ImageError:
        return  # the decode for the model says what is wrong with the image
    except Exception:
        log.exception("reading the watermark of one image failed")
        return
    if signal is not None:
        item.signals.append(signal)


class _PixelBudget:
    """Pixels being decoded at once: at most ``limit``, or one image alone."""

    def __init__(self) -> None:
        self._used = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def taken(self, pixels: int, limit: int) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self._used == 0 or self._used + pixels <= limit)
            self._used += pixels
        try:
            yield
        finally:
            with self._changed:
                self._used -= pixels
                self._changed.notify_all()


def outcome(item: Item, future: Future[Any]) -> Decoded:
    try:
        return Decoded(item, future.result())
    except ImageError as exc:
        item.fail(exc.reason, exc.detail)
        return Decoded(item, None)
    except Exception as exc:  # MemoryError included: this image's, unless nothing can run
        log.exception("decoding one image failed")
        return Decoded(item, None, type(exc).__name__)

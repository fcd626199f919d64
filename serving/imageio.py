"""Decode untrusted image bytes into RGB, with limits checked before any pixel is decoded.

Shared by the worker (which must not import torch), the TorchServe handler and training. Every
failure is an :class:`~serving.errors.ImageError` whose ``reason`` is a stable code, except
MemoryError, which is about the process, not the image, and is left to the caller.

Pillow's own decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``, a process-wide global) is left
untouched: its warning is turned into an error inside a ``warnings.catch_warnings`` block for the
duration of one ``open`` (a block that changes the process's filters, so one thread at a time
opens; decoding runs in parallel), and our own per-call ``max_pixels`` is checked on the header's
size before ``load()``. Pillow still refuses anything above twice its global limit (about 179 M
pixels).

A caller that only needs a small image (the model server: the model resizes the short side to
224) passes ``target_side``: a JPEG is then decoded at a reduced scale by the decoder itself, and
other formats are box-averaged down in strips right after decoding, so what an item holds is about
``target_side`` on its short side and the only full-size buffer is the decoder's own output.
"""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image, UnidentifiedImageError

from schemas.limits import MAX_IMAGE_ASPECT_RATIO, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE
from serving.errors import ImageError

__all__ = [
    "MAX_IMAGE_BYTES",
    "ImageError",
    "ImageHeader",
    "decode_image",
    "decode_opened",
    "open_image",
    "probe_image",
    "read_header",
]

MAX_IMAGE_BYTES: Final[int] = 20 * 1024 * 1024
"""Default size limit of an encoded image (the worker passes its own setting)."""

_WANTED_FORMATS: Final[tuple[str, ...]] = (
    "JPEG",
    "MPO",  # multi-picture JPEG, what many phones write
    "PNG",
    "GIF",
    "WEBP",
    "BMP",
    "TIFF",
    "AVIF",
)
# Formats outside this list (EPS, PSD, FITS, ...) are refused: they are not what producers send and
# some of their decoders are a larger attack surface than the image is worth.

_EXIF_ORIENTATION: Final[int] = 0x0112
_TRANSPOSE: Final[dict[int, Image.Transpose]] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIDES_SWAPPED: Final[frozenset[int]] = frozenset({5, 6, 7, 8})
_ALPHA_MODES: Final[frozenset[str]] = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_SIXTEEN_BIT_MODES: Final[frozenset[str]] = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_REDUCIBLE_MODES: Final[frozenset[str]] = frozenset(
    {"L", "LA", "La", "RGB", "RGBA", "RGBa", "CMYK", "I", "F"}
)
# Image.reduce averages what it is given: palette indices and 1-bit pixels are widened first, and
# images with a transparent colour key become RGBA so that averaged pixels keep their alpha.

_OPEN_LOCK: Final = threading.Lock()
"""Held for one ``open`` (the header only): another thread's ``catch_warnings`` block, ending in
between, would restore filters without this one's error."""

_STRIP_PIXELS: Final[int] = 1 << 20
"""Pixels of the full-size image widened and reduced at a time, bounding the temporaries."""


def _formats() -> tuple[str, ...]:
    Image.init()
    return tuple(name for name in _WANTED_FORMATS if name in Image.OPEN)


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says, read without decoding a pixel (:func:`read_header`)."""

    format: str
    width: int
    """Displayed width: after the EXIF orientation."""
    height: int
    orientation: int
    """EXIF orientation, 1 when the image is displayed as stored."""

    @property
    def stored_size(self) -> tuple[int, int]:
        """(width, height) as stored, before the orientation: what a decoder gives."""
        swapped = self.orientation in _SIDES_SWAPPED
        return (self.height, self.width) if swapped else (self.width, self.height)


def read_header(
    data: bytes,
    *,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_aspect_ratio: float = MAX_IMAGE_ASPECT_RATIO,
) -> ImageHeader:
    """Read only the header of ``data``: its format, displayed size and EXIF orientation.

    Checks the same limits as :func:`decode_image` without decoding pixels, so a passing read
    means the image is of a known format and size (not that every byte of it decodes).
    Raises ImageError.
    """
    image = _open(
        data, max_bytes=max_bytes, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio
    )
    with image:
        width, height = image.size
        orientation = _orientation(image, header_only=True)
        if orientation in _SIDES_SWAPPED:
            width, height = height, width
        return ImageHeader(str(image.format), width, height, orientation)


def probe_image(
    data: bytes,
    *,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_aspect_ratio: float = MAX_IMAGE_ASPECT_RATIO,
) -> tuple[str, int, int]:
    """:func:`read_header`'s format and displayed width and height. Raises ImageError."""
    header = read_header(
        data, max_bytes=max_bytes, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio
    )
    return header.format, header.width, header.height


def decode_image(
    data: bytes,
    *,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_aspect_ratio: float = MAX_IMAGE_ASPECT_RATIO,
    target_side: int | None = None,
) -> Image.Image:
    """Decode ``data`` into an upright RGB image.

    Transparent pixels are composited on white; 16-bit images are scaled to 8 bits; only the
    first frame of an animation is read; EXIF orientation is applied. With ``target_side``, the
    image is reduced by the largest whole factor that keeps its short side at least
    ``target_side`` (an image already smaller is left as it is). Raises ImageError (ValueError
    for a ``target_side`` below 1).
    """
    opened = open_image(
        data, max_bytes=max_bytes, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio
    )
    return decode_opened(opened, target_side=target_side)


def open_image(
    data: bytes,
    *,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_aspect_ratio: float = MAX_IMAGE_ASPECT_RATIO,
) -> Image.Image:
    """The first step of :func:`decode_image`: ``data``'s header read and checked against the
    limits, no pixel decoded (its ``size`` is known); :func:`decode_opened` does the rest.
    Raises ImageError."""
    return _open(
        data, max_bytes=max_bytes, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio
    )


def decode_opened(image: Image.Image, *, target_side: int | None = None) -> Image.Image:
    """The rest of :func:`decode_image` on an image from :func:`open_image`, which it closes."""
    with image:
        if target_side is not None and target_side < 1:
            raise ValueError(f"target_side must be at least 1, not {target_side}")
        try:
            image.seek(0)
            orientation = _orientation(image)
            if target_side is not None:
                # JPEG only (a no-op elsewhere): the decoder scales by 1/2, 1/4 or 1/8 itself.
                image.draft("RGB", (target_side, target_side))
            image.load()
            reduced = image if target_side is None else _reduce(image, target_side)
            rgb = _to_rgb(reduced)
        except (ImageError, MemoryError):
            raise  # MemoryError: this process is short of memory, which says nothing of the image
        except Exception as exc:  # decoders of untrusted bytes raise all sorts; none may escape
            raise _decode_error(exc) from None
    method = _TRANSPOSE.get(orientation)
    return rgb if method is None else rgb.transpose(method)


def _open(data: bytes, *, max_bytes: int, max_pixels: int, max_aspect_ratio: float) -> Image.Image:
    if not data:
        raise ImageError("empty_image", "the image is empty (0 bytes); send the image file's bytes")
    if len(data) > max_bytes:
        raise ImageError(
            "image_too_large",
            f"the image file is {len(data)} bytes, over the limit of {max_bytes}; "
            "send a smaller or re-compressed image",
        )
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=_formats())
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            "decompression_bomb",
            "the image header declares far more pixels than any real photo "
            "(a decompression bomb); it was not decoded",
        ) from None
    except MemoryError:
        raise
    except UnidentifiedImageError:
        raise ImageError(
            "undecodable_image",
            f"the bytes are not an image in a supported format ({', '.join(_formats())}); "
            "check that the producer sends the image file itself",
        ) from None
    except Exception as exc:  # a malformed header can raise anything from a plugin
        raise _decode_error(exc) from None
    _check_size(image, max_pixels, max_aspect_ratio)
    return image


def _check_size(image: Image.Image, max_pixels: int, max_aspect_ratio: float) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        image.close()
        raise ImageError("empty_image", f"the image has no pixels ({width}x{height})")
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
        image.close()
        raise ImageError(
            "image_too_large",
            f"the image is {width}x{height}, a side is over {MAX_IMAGE_SIDE} pixels; "
            "send a downscaled copy",
        )
    if width * height > max_pixels:
        image.close()
        raise ImageError(
            "decompression_bomb",
            f"the image declares {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels}; it was not decoded (send a downscaled copy if it is a real image)",
        )
    long_side, short_side = max(width, height), min(width, height)
    if long_side > max_aspect_ratio * short_side:
        image.close()
        raise ImageError(
            "extreme_aspect_ratio",
            f"the image is {width}x{height}: its long side is {long_side / short_side:.0f} times "
            f"its short side, over the limit of {max_aspect_ratio:g}; it was not decoded "
            "(crop it to the part that matters)",
        )


def _orientation(image: Image.Image, *, header_only: bool = False) -> int:
    """The EXIF orientation of ``image`` (1: as stored). ``header_only``: without decoding
    pixels, so a PNG whose eXIf chunk follows its pixels (Pillow would decode them all to reach
    it; writers put it first) reads as 1."""
    if header_only and image.format == "PNG" and "exif" not in image.info:
        return 1
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a corrupt EXIF block must not lose an otherwise good image
        return 1


def _reduce(image: Image.Image, target_side: int) -> Image.Image:
    """``image`` box-averaged by the largest whole factor that keeps its short side at least
    ``target_side``, in a mode :func:`_to_rgb` reads like the original's."""
    factor = min(image.size) // target_side
    if factor < 2:
        return image
    mode = _reducible_mode(image)
    width, height = image.size
    # Strips of whole multiples of the factor reduce exactly as the whole image would.
    rows = factor * max(1, _STRIP_PIXELS // (width * factor))
    reduced = Image.new(mode, (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(top + rows, height)))
        if strip.mode != mode:
            strip = strip.convert(mode)
        reduced.paste(strip.reduce(factor), (0, top // factor))
    return reduced


def _reducible_mode(image: Image.Image) -> str:
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        return "I"
    if "transparency" in image.info or mode == "PA":
        return "RGBA"
    return mode if mode in _REDUCIBLE_MODES else "RGB"


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES or mode == "F":
        return Image.fromarray(_to_uint8(image), mode="L").convert("RGB")
    has_alpha = mode in _ALPHA_MODES or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "RGB":
        return image.copy()
    return image.convert("RGB")


def _to_uint8(image: Image.Image) -> np.ndarray:
    """Grey levels of a 16-bit, 32-bit integer or float image, scaled to 0..255."""
    values = np.asarray(image).astype(np.float64)
    if image.mode == "F":
        # Float images come as 0..1 or as 0..255; anything else is clipped.
        scale = 255.0 if values.size and float(values.max()) <= 1.0 else 1.0
        values = values * scale
    else:
        values = values / 257.0  # 65535 -> 255 exactly
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _decode_error(exc: Exception) -> ImageError:
    text = str(exc)
    if isinstance(exc, EOFError) or "truncated" in text.lower():
        return ImageError(
            "truncated_image",
            f"the image file ends early ({text or type(exc).__name__}); "
            "it was probably cut off in transfer, send the complete file",
        )
    return ImageError(
        "undecodable_image",
        f"the image cannot be decoded ({type(exc).__name__}: {text}); "
        "check that the file is a valid image",
    )

"""The Stable Diffusion XL invisible watermark, read in the model server.

SDXL's reference pipelines embed a fixed 48-bit message with ``invisible-watermark``'s DWT-DCT
encoder. The decoder needs the image at full size (a reduced image has lost the watermark) and
imports torch and OpenCV, which is why this signal is read here and not in the worker. Off unless
an archive's handler settings ask for it (``aigis export --watermark``).

The watermark is as forgeable as metadata (the encoder and the message are public) and a
re-encode or a resize removes it, so it is ``claimed`` evidence: it never decides a verdict alone.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from PIL import Image

SDXL_MESSAGE: Final[int] = 0b101100111110110010010000011110111011000110011110
"""The message of the SDXL reference pipelines (``diffusers``' ``StableDiffusionXLWatermarker``)."""

SDXL_BITS: Final[tuple[int, ...]] = tuple(int(bit) for bit in f"{SDXL_MESSAGE:048b}")

MAX_BIT_ERRORS: Final[int] = 4
"""Bits of 48 that may differ: random pixels match 44 or more with a chance under 10^-9."""

MIN_SIDE: Final[int] = 512
"""Smaller images are not read: SDXL makes none, and the decoder needs blocks to work on."""


def read_watermark(image: Image.Image, max_pixels: int) -> dict[str, str | None] | None:
    """The ``sd_watermark`` signal of a full-size RGB ``image``, or None when it carries no SDXL
    watermark (or is too small or larger than ``max_pixels``, which is not read)."""
    from imwatermark import WatermarkDecoder

    width, height = image.size
    if min(width, height) < MIN_SIDE or width * height > max_pixels:
        return None
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
    bits = WatermarkDecoder("bits", len(SDXL_BITS)).decode(bgr, "dwtDct")
    errors = sum(int(a) != b for a, b in zip(bits, SDXL_BITS, strict=True))
    if errors > MAX_BIT_ERRORS:
        return None
    return {
        "kind": "sd_watermark",
        "value": f"SDXL invisible watermark, {len(SDXL_BITS) - errors} of 48 bits",
        "generator": "sdxl",
        "strength": "claimed",
    }


def embed_sdxl_watermark(image: Image.Image) -> Image.Image:
    """``image`` with the SDXL watermark embedded, as the SDXL pipelines do (for tests, demos)."""
    from imwatermark import WatermarkEncoder

    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", list(SDXL_BITS))
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
    marked = encoder.encode(bgr, "dwtDct")
    return Image.fromarray(np.ascontiguousarray(marked[:, :, ::-1]))

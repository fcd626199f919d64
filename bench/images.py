"""Images for the benchmarks that run the worker: every one a miss of the others' caches.

The worker answers an image from its cache when it has seen the same bytes (SHA-256) or, with
the evidence stage's near-duplicate step, an image whose PDQ hash is within
``evidence.match_distance`` bits of one it has scored. Images that differ only in bytes the
decoder ignores (a trailer after the JPEG end marker) are near-duplicates of one another, so a
benchmark that means to measure scoring must use images that differ in their pixels.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

__all__ = ["distinct_images"]

SIDE = 256
"""The smoke set's images are 256 x 256, half JPEG and half PNG: these are too."""


def distinct_images(count: int) -> list[tuple[bytes, str | None]]:
    """``count`` images that differ in their pixels, not only in their bytes, half JPEG
    (quality 90, about 9 kB, the smoke set's about 6 kB) and half PNG (about 70 kB, the smoke
    set's about 75 kB), with the smoke set's captions.

    Each image is a random 8 x 8 colour field upscaled to 256 pixels, so no two are
    near-duplicates (tests/bench/test_images.py); the seed is new at every call, so two calls
    share no image either.
    """
    from training.data import load_split

    captions = [
        s.caption for s in load_split("smoke", "test", normalise=False, require_labels=False)
    ]
    rng = np.random.default_rng(int.from_bytes(os.urandom(4)))
    images = []
    for i in range(count):
        field = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(field).resize((SIDE, SIDE), Image.Resampling.BICUBIC)
        out = io.BytesIO()
        if i % 2:
            image.save(out, "JPEG", quality=90)
        else:
            image.save(out, "PNG", compress_level=1)
        images.append((out.getvalue(), captions[i % len(captions)]))
    return images

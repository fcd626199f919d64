"""``smoke-shortcut``: a miniature of a data set whose easiest cue is the file format.

Real data sets for AI-image detection are assembled from two sources: photographs, which reach
the collector as JPEG from cameras and websites, and generated images, which generators deliver
as PNG at their native size. A detector trained on such a set can score well by learning
"compression traces mean real" instead of the generators' traces, and fails as soon as AI images
arrive compressed like photographs (`docs/training.md`, "Format shortcuts").

The ordinary ``smoke`` set carries that shortcut too, but its simulated fingerprints are so
strong that the tiny model learns them first and barely uses the format. This variant is built
so that the format is the easiest thing to learn and the honest signal is present but harder, as
in real data:

- every image is delivered at the generators' native 224x224 (``smoke.NATIVE``), real ones too,
  so the only thing that differs between the classes besides the fingerprint is the format;
- real items are JPEG at quality :data:`JPEG_QUALITY` (drawn per item), generated items PNG;
- generated items carry their generator's fingerprint at :data:`FAINT` of its ``smoke``
  strength: still learnable, and still there after a JPEG re-encode, but slower to learn than
  the compression traces.

Content, crops, colour jitter and captions are drawn exactly as in ``smoke`` (from the same
photographs), so real and generated items differ only by the fingerprint and the format. The
both-classes-JPEG counterpart (spec ``smoke-shortcut-jpeg``) holds the same items, every one JPEG
at the quality drawn for it. The label set is the CT2 one (real and five generators).

Built on first use (about ten seconds of CPU) and cached under ``<cache_dir>/smoke-shortcut-v1/``
in ``ordinary/`` and ``both-jpeg/``, like ``smoke``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
from PIL import Image

from schemas.labels import GENERATORS
from schemas.settings import load_settings
from training.data import fingerprints
from training.data.smoke import (
    ORDINARY,
    SEED,
    SOURCES,
    TEMPLATES,
    CleanItem,
    balanced_labels,
    is_current,
    random_crop,
    recipe,
    write_set,
)

VERSION: Final[str] = "smoke-shortcut-v1"
SPLIT_SIZES: Final[dict[str, int]] = {"train": 600, "validation": 150, "test": 300}
"""Items per split, half real; small so that a test can train on it twice in about a minute."""
FAINT: Final[float] = 0.5
"""Share of each simulated fingerprint a generated item gets (``smoke``'s items get all of it)."""
JPEG_QUALITY: Final[tuple[int, int]] = (50, 70)
"""Range of the JPEG quality an item is stored at (real items always; generated ones in
``both-jpeg`` only), drawn per item: what photographs shared on the web are saved at, and within
the range the training degradations (``jpeg_q50`` to ``jpeg_q95``) cover."""
SPLIT_STREAM: Final[int] = 7
"""Keeps this set's random draws apart from ``smoke``'s (which use ``[SEED, split, ...]``)."""


def shortcut_dir(variant: str = ORDINARY) -> Path:
    """The parquet directory of one variant (``ordinary`` or ``both-jpeg``) of the cached set,
    built first if it is absent, incomplete or from other code."""
    target = load_settings().cache_dir / VERSION
    if not is_current(target, recipe(__file__)):
        build(target)
    return target / variant


def build(target: Path, sizes: dict[str, int] = SPLIT_SIZES) -> None:
    """Write the set to ``target`` atomically. ``sizes`` (items per split) is for tests."""
    manifest: dict[str, str | int] = {
        "version": VERSION,
        "recipe": recipe(__file__),
        "faint": str(FAINT),
        "jpeg_quality": f"{JPEG_QUALITY[0]}-{JPEG_QUALITY[1]}",
    }
    write_set(target, clean_items, sizes, GENERATORS, manifest)


def clean_items(photos: dict[str, Image.Image], split_index: int, count: int) -> list[CleanItem]:
    """``count`` items of one split, half real, the rest split evenly across the generators;
    item ``i`` depends only on (SEED, SPLIT_STREAM, split, i) and its class."""
    labels = balanced_labels(count, len(GENERATORS) - 1)
    order = np.random.default_rng([SEED, SPLIT_STREAM, split_index]).permutation(count)
    return [
        _item(photos, labels[position], np.random.default_rng([SEED, SPLIT_STREAM, split_index, i]))
        for i, position in enumerate(order)
    ]


def _item(photos: dict[str, Image.Image], label_b: int, rng: np.random.Generator) -> CleanItem:
    name = str(rng.choice(sorted(photos)))
    pixels = random_crop(photos[name], rng)
    if label_b:
        marked = fingerprints.FINGERPRINTS[GENERATORS[label_b]](pixels, rng)
        pixels = pixels + FAINT * (marked - pixels)
    image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    caption = str(rng.choice(TEMPLATES)).format(scene=str(rng.choice(SOURCES[name])))
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    return CleanItem(image, caption, label_b, quality)

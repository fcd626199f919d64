"""``smoke``: a small synthetic data set that exercises the whole pipeline offline.

It is a smoke test for training, evaluation and serving code, NOT a benchmark of detection:
its "generated" images are real photographs altered by the simulated fingerprints of
``training.data.fingerprints``, far easier to tell apart than the output of real generators.

Every item starts as a random crop of a photograph bundled with scikit-image (random position,
scale and flip, colour jitter) at the simulated generators' native 224x224; generated items
then get their generator's fingerprint; every item is delivered at 256x256. Real (class 0) and
generated items share content and processing, so only the fingerprint tells them apart. Captions
come from templates that describe the scene, never the class. Task A is balanced: half the items are
real, the other half split evenly across the five CT2 generators.

The set carries the format shortcut real data sets carry: in its ordinary splits (spec ``smoke``)
real items are stored as JPEG (quality 30 to 60) and generated ones as PNG, as generators deliver
them. Loading re-encodes every image at JPEG quality 95, but the real items' earlier, coarser
compression stays visible, so a model can learn "compression traces mean real". The qualities
are lower than most cameras' because the simulated fingerprints are far easier to see than real
generators' traces: at 70 to 90 the traces hide among the fingerprints' own edges.

The both-classes-JPEG variant (spec ``smoke-jpeg``) holds the same items, every one of them JPEG
at the quality drawn for it: real items are byte for byte those of ``smoke``, the classes differ
only by the fingerprint, and a model that learned the shortcut loses its AI recall there.

``smoke`` has the CT2 label set (real and five generators). ``smoke:N`` has the first ``N`` classes
of :data:`LABEL_SET` (real, the five CT2 generators, then up to seven newer ones), so ``smoke:13``
exercises a label set of a dozen generators and ``smoke:8`` one grown by two; the first classes
of every ``smoke:N`` keep their order, so a model trained on a smaller one can be grown into it.
``smoke-jpeg:N`` is the both-classes-JPEG variant of ``smoke:N``.

Each set is built deterministically on first use (a few seconds) and cached as CT2-format parquet
under ``<cache_dir>/smoke-v1/`` (``smoke-v1-N/`` for ``smoke:N``), in ``ordinary/`` and
``both-jpeg/``, each with ``train``, ``validation`` and ``test``, so it doubles as an example of
that format.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from schemas.labels import GENERATORS, REAL
from schemas.settings import load_settings
from training.data import fingerprints
from training.data.encoding import encode_jpeg
from training.data.parquet import write_ct2, write_generators
from training.data.sample import DataError, Sample, make_sample
from training.data.splits import SPLITS

VERSION: Final[str] = "smoke-v1"
SIZE: Final[int] = 256
"""Side of every delivered image; the detector's image processor resizes it to NATIVE."""
NATIVE: Final[int] = 224
"""Side the simulated generators work at, so their artefacts sit on the processor's pixel grid."""
SPLIT_SIZES: Final[dict[str, int]] = {"train": 1200, "validation": 300, "test": 300}
"""Items per split; each is half real, half split evenly across the five generators."""
SEED: Final[int] = 20_240_611
MANIFEST: Final[str] = "manifest.json"
ORDINARY: Final[str] = "ordinary"
"""Sub-directory of the splits with the format shortcut: real items JPEG, generated items PNG."""
BOTH_JPEG: Final[str] = "both-jpeg"
"""Sub-directory of the same splits with every item JPEG at the same qualities."""
VARIANTS: Final[tuple[str, str]] = (ORDINARY, BOTH_JPEG)
JPEG_QUALITY: Final[tuple[int, int]] = (30, 60)
"""Range of the JPEG quality an item is stored at (real items always; generated ones in
``both-jpeg`` only), drawn per item."""
LABEL_SET: Final[tuple[str, ...]] = (REAL, *fingerprints.FINGERPRINTS)
"""Every class a smoke set can have, in label order; ``smoke`` is its first six (CT2)."""

SOURCES: Final[dict[str, tuple[str, ...]]] = {
    # scikit-image function name -> ways a caption may describe the scene.
    "astronaut": ("an astronaut in a spacesuit", "a woman in a space suit beside a flag"),
    "coffee": ("a cup of coffee on a saucer", "a coffee cup on a table"),
    "chelsea": ("a tabby cat", "a cat looking to the side"),
    "rocket": ("a rocket on a launch pad", "a space rocket before launch"),
    "hubble_deep_field": ("distant galaxies in deep space", "a field of stars and galaxies"),
    "retina": ("the back of a human eye", "a retina with blood vessels"),
    "immunohistochemistry": ("a stained tissue sample", "tissue under a microscope"),
    "camera": ("a man with a camera on a tripod", "a photographer in a park"),
    "brick": ("a weathered brick wall", "rows of old bricks"),
    "grass": ("a patch of grass", "blades of grass"),
    "gravel": ("a gravel path", "small stones on the ground"),
    "moon": ("the surface of the moon", "craters on the moon"),
    "coins": ("old coins on a table", "a collection of coins"),
    "clock": ("a clock on a wall", "a wall clock"),
}
TEMPLATES: Final[tuple[str, ...]] = (
    "a photo of {scene}",
    "{scene}",
    "a picture showing {scene}",
    "{scene}, in natural light",
    "a close view of {scene}",
    "an image of {scene} taken indoors",
    "a snapshot of {scene}",
)


def smoke_dir(classes: int = len(GENERATORS), variant: str = ORDINARY) -> Path:
    """The parquet directory of one variant (``ordinary`` or ``both-jpeg``) of the cached smoke
    set of the first ``classes`` classes of :data:`LABEL_SET`, the set built first if it is
    absent, incomplete or from other code."""
    generators = label_set(classes)
    suffix = "" if generators == GENERATORS else f"-{classes}"
    target = load_settings().cache_dir / f"{VERSION}{suffix}"
    if not is_current(target):
        build(target, generators=generators)
    return target / variant


def label_set(classes: int) -> tuple[str, ...]:
    """The first ``classes`` classes of :data:`LABEL_SET`; DataError outside 2..len(LABEL_SET)."""
    if not 2 <= classes <= len(LABEL_SET):
        raise DataError(
            f"a smoke set has 2 to {len(LABEL_SET)} classes (real and up to "
            f"{len(LABEL_SET) - 1} generators), not {classes}; write smoke:N with N in that range",
            f"smoke:{classes}",
        )
    return LABEL_SET[:classes]


def recipe(*modules: str) -> str:
    """A digest of the code that generates a set (this module, the fingerprints and
    ``modules``): a cache built by other code is rebuilt."""
    digest = hashlib.sha256()
    for module in (__file__, fingerprints.__file__, *modules):
        digest.update(Path(module).read_bytes())
    return digest.hexdigest()[:16]


def is_current(target: Path, digest: str | None = None) -> bool:
    """Whether ``target`` holds a complete set built by the code of ``digest`` (default: this
    module's :func:`recipe`)."""
    try:
        manifest = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("recipe") == (digest or recipe())


def build(
    target: Path, sizes: dict[str, int] = SPLIT_SIZES, generators: tuple[str, ...] = GENERATORS
) -> None:
    """Write the smoke set to ``target`` atomically: a reader never sees half a data set.

    ``sizes`` (items per split) is for tests; the cached set always has ``SPLIT_SIZES``.
    """

    def items(photos: dict[str, Image.Image], split_index: int, count: int) -> list[CleanItem]:
        return clean_items(photos, split_index, count, generators)

    write_set(
        target, items, sizes, generators, {"version": VERSION, "recipe": recipe(), "size": SIZE}
    )


ItemMaker = Callable[[dict[str, Image.Image], int, int], "list[CleanItem]"]
"""(photographs, split index, count) -> the clean items of one split."""


def write_set(
    target: Path,
    items: ItemMaker,
    sizes: dict[str, int],
    generators: tuple[str, ...],
    manifest: dict[str, str | int],
) -> None:
    """Write both variants of every split of the items ``items`` makes to ``target``
    atomically, with ``manifest`` (``version`` and ``recipe``) and the split counts."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{manifest['version']}-", dir=target.parent))
    retired = target.parent / f"{staging.name}-retired"
    try:
        photos = photographs()
        counts = {}
        for split_index, split in enumerate(SPLITS):
            made = items(photos, split_index, sizes[split])
            for variant in VARIANTS:
                samples = (item.encoded(variant) for item in made)
                counts[split] = write_ct2(staging / variant / f"{split}.parquet", samples)
        for variant in VARIANTS:
            write_generators(staging / variant, generators)
        written = {**manifest, "seed": SEED, "splits": counts}
        (staging / MANIFEST).write_text(json.dumps(written, indent=2) + "\n", encoding="utf-8")
        if target.exists():
            os.replace(target, retired)  # stale or interrupted: moved aside, deleted below
        os.replace(staging, target)
    except OSError:
        if is_current(target, str(manifest["recipe"])):
            return  # another process finished the same build first
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)


@dataclass(frozen=True)
class CleanItem:
    """One smoke item before it is stored: the 256x256 image, and how it is stored."""

    image: Image.Image
    caption: str
    label_b: int
    quality: int
    """The JPEG quality of the item where it is stored as JPEG."""

    def encoded(self, variant: str = ORDINARY) -> Sample:
        """The item as stored in ``variant``: JPEG, or PNG for a generated item in ordinary."""
        if self.label_b and variant == ORDINARY:
            buffer = io.BytesIO()
            self.image.save(buffer, format="PNG")
            data = buffer.getvalue()
        else:
            data = encode_jpeg(self.image, self.quality)
        return make_sample(data, self.caption, int(self.label_b > 0), self.label_b)


def generate_split(
    photos: dict[str, Image.Image],
    split_index: int,
    count: int,
    generators: tuple[str, ...] = GENERATORS,
    variant: str = ORDINARY,
) -> list[Sample]:
    """``count`` items of one split labelled on ``generators`` as stored in ``variant``; item
    ``i`` depends only on (SEED, split, i) and its class."""
    items = clean_items(photos, split_index, count, generators)
    return [item.encoded(variant) for item in items]


def clean_items(
    photos: dict[str, Image.Image],
    split_index: int,
    count: int,
    generators: tuple[str, ...] = GENERATORS,
) -> list[CleanItem]:
    """``count`` items of one split labelled on ``generators`` (a prefix of :data:`LABEL_SET`),
    not yet encoded; item ``i`` depends only on (SEED, split, i) and its class."""
    if generators != LABEL_SET[: len(generators)]:
        raise ValueError(f"{generators} is not a prefix of the smoke label set {LABEL_SET}")
    labels = balanced_labels(count, len(generators) - 1)
    order = np.random.default_rng([SEED, split_index]).permutation(count)
    return [
        _item(photos, int(labels[position]), np.random.default_rng([SEED, split_index, index]))
        for index, position in enumerate(order)
    ]


def balanced_labels(count: int, made: int) -> list[int]:
    """``count`` Task B labels, in class order: half (and the remainder) real, the rest split
    evenly across the ``made`` generators 1..made."""
    per_generator = count // (2 * made)
    labels = [0] * (count - per_generator * made)
    for label_b in range(1, made + 1):
        labels += [label_b] * per_generator
    return labels


def _item(photos: dict[str, Image.Image], label_b: int, rng: np.random.Generator) -> CleanItem:
    name = str(rng.choice(sorted(photos)))
    pixels = random_crop(photos[name], rng)
    if label_b:
        pixels = fingerprints.FINGERPRINTS[LABEL_SET[label_b]](pixels, rng)
    native = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    image = native.resize((SIZE, SIZE), Image.Resampling.BICUBIC)
    scene = str(rng.choice(SOURCES[name]))
    caption = str(rng.choice(TEMPLATES)).format(scene=scene)
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    return CleanItem(image, caption, label_b, quality)


def random_crop(photo: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """A random square crop, flipped half the time, colour-jittered, resized to NATIVE."""
    width, height = photo.size
    side = int(min(height, width) * rng.uniform(0.35, 0.95))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    crop = photo.resize(
        (NATIVE, NATIVE), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side)
    )
    if rng.random() < 0.5:
        crop = ImageOps.mirror(crop)
    crop = ImageEnhance.Color(crop).enhance(rng.uniform(0.8, 1.2))
    crop = ImageEnhance.Contrast(crop).enhance(rng.uniform(0.85, 1.15))
    crop = ImageEnhance.Brightness(crop).enhance(rng.uniform(0.85, 1.15))
    return np.asarray(crop, dtype=np.float32)


def photographs() -> dict[str, Image.Image]:
    """The scikit-image photographs as RGB uint8, at most 2 * SIZE a side.

    Only images bundled with scikit-image are used; others would need a download.
    """
    from skimage import data  # imported here: only building the set needs scikit-image

    photos = {}
    for name in SOURCES:
        pixels = np.asarray(getattr(data, name)())
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[..., None], 3, axis=2)
        photo = Image.fromarray(np.ascontiguousarray(pixels[..., :3]).astype(np.uint8))
        # Crops are at most ~1.9x the output size, which keeps building fast; detail finer than
        # that would be lost in the resize to SIZE anyway.
        photo.thumbnail((2 * SIZE, 2 * SIZE), Image.Resampling.LANCZOS)
        photos[name] = photo
    return photos

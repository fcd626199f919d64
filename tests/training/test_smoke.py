"""The ``smoke`` data set: deterministic, balanced, captions that never name the class."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from schemas.labels import GENERATORS
from training.data import DataError, generators_of, load_split
from training.data.fingerprints import FINGERPRINTS
from training.data.smoke import (
    BOTH_JPEG,
    ORDINARY,
    SIZE,
    SPLIT_SIZES,
    build,
    generate_split,
    photographs,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return photographs()


def test_generation_is_deterministic(photos: dict[str, Image.Image]) -> None:
    first = generate_split(photos, 2, 20)
    again = generate_split(photos, 2, 20)
    assert [s.sha256 for s in first] == [s.sha256 for s in again]
    assert first == again
    assert {s.sha256 for s in first}.isdisjoint(s.sha256 for s in generate_split(photos, 1, 20))


def test_splits_are_balanced_and_sized() -> None:
    assert generators_of("smoke") == GENERATORS
    for split, size in SPLIT_SIZES.items():
        samples = load_split("smoke", split, normalise=False)
        assert len(samples) == size
        counts = Counter(s.label_b for s in samples)
        assert counts[0] == size // 2
        assert {counts[b] for b in range(1, len(GENERATORS))} == {size // 10}
        assert all(s.label_a == int(s.label_b > 0) for s in samples)


def test_items_are_256_px_with_scene_captions_and_the_format_shortcut() -> None:
    samples = load_split("smoke", "test", normalise=False)
    class_words = {"real", "fake", "generated", "synthetic", "ai", *GENERATORS}
    for sample in samples[:60]:
        image = Image.open(io.BytesIO(sample.image))
        # Real items as a camera stores them, generated ones as a generator delivers them.
        assert image.format == ("PNG" if sample.label_a else "JPEG")
        assert (image.size, image.mode) == ((SIZE, SIZE), "RGB")
        assert sample.caption
        assert not class_words & set(sample.caption.lower().replace(",", "").split())


def test_both_jpeg_holds_the_same_items_in_one_format() -> None:
    assert generators_of("smoke-jpeg") == GENERATORS
    for split in SPLIT_SIZES:
        ordinary = load_split("smoke", split, normalise=False)
        both = load_split("smoke-jpeg", split, normalise=False)
        assert [(s.label_b, s.caption) for s in both] == [(s.label_b, s.caption) for s in ordinary]
    for plain, jpeg in zip(ordinary[:60], both[:60], strict=True):
        assert Image.open(io.BytesIO(jpeg.image)).format == "JPEG"
        if plain.label_a == 0:
            assert jpeg.image == plain.image  # real items are byte for byte the same
        else:
            # The same picture: only the storage differs.
            a = np.asarray(Image.open(io.BytesIO(plain.image)), dtype=np.float64)
            b = np.asarray(Image.open(io.BytesIO(jpeg.image)), dtype=np.float64)
            assert np.abs(a - b).mean() < 12.0


def test_each_fingerprint_alters_the_crop_differently() -> None:
    rng = np.random.default_rng(0)
    crop = rng.uniform(60, 200, (SIZE, SIZE, 3)).astype(np.float32)
    outputs = {name: fn(crop, np.random.default_rng(1)) for name, fn in FINGERPRINTS.items()}
    for name, out in outputs.items():
        assert out.shape == crop.shape
        assert out.dtype == np.float32
        assert 2.0 < float(np.abs(out - crop).mean()) < 60.0, name
    names = sorted(outputs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert float(np.abs(outputs[a] - outputs[b]).mean()) > 2.0, (a, b)


def test_build_is_atomic_and_reused(tmp_path: Path, photos: dict[str, Image.Image]) -> None:
    target = tmp_path / "smoke"
    (target / "stale").mkdir(parents=True)  # an interrupted build: no manifest
    build(target, sizes={"train": 10, "validation": 10, "test": 10})
    assert sorted(p.name for p in target.iterdir()) == [BOTH_JPEG, "manifest.json", ORDINARY]
    for variant in (ORDINARY, BOTH_JPEG):
        assert sorted(p.name for p in (target / variant).iterdir()) == [
            "generators.json",
            "test.parquet",
            "train.parquet",
            "validation.parquet",
        ]
        assert len(load_split(str(target / variant), "validation")) == 10
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_smoke_n_has_a_dozen_generators_and_keeps_the_first_classes_order() -> None:
    wide = generators_of("smoke:13")
    assert wide[: len(GENERATORS)] == GENERATORS
    assert len(wide) == 13
    assert len(set(wide)) == 13
    assert {"flux/1-dev", "openai/gpt-image-1"} <= set(wide)
    assert generators_of("smoke:8") == wide[:8]
    samples = load_split("smoke:13", "validation", normalise=False)
    counts = Counter(s.label_b for s in samples)
    assert counts[0] == len(samples) - 12 * (len(samples) // 24)
    assert {counts[b] for b in range(1, 13)} == {len(samples) // 24}


@pytest.mark.parametrize(
    "spec", ["smoke:1", "smoke:14", "smoke:x", "smoke:", "smoke:-3", "smoke:²"]
)
def test_a_smoke_set_of_an_impossible_size_is_refused(spec: str) -> None:
    with pytest.raises(DataError, match="smoke:N"):
        generators_of(spec)

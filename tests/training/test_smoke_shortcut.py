"""``smoke-shortcut``: the format is the easiest cue, the fingerprint a faint one."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from schemas.labels import GENERATORS
from training.data import DataError, generators_of, load_split, smoke_shortcut
from training.data.smoke import BOTH_JPEG, MANIFEST, NATIVE, ORDINARY, photographs
from training.data.smoke_shortcut import FAINT, JPEG_QUALITY, build, clean_items

pytestmark = pytest.mark.unit

SIZES = {"train": 20, "validation": 10, "test": 20}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("shortcut") / "set"
    build(target, SIZES)
    return target


def _format(data: bytes) -> str | None:
    return Image.open(io.BytesIO(data)).format


def test_real_items_are_jpeg_and_generated_ones_png_until_both_are_jpeg(built: Path) -> None:
    manifest = json.loads((built / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["splits"] == SIZES
    for split, count in SIZES.items():
        ordinary = load_split(str(built / ORDINARY), split, normalise=False)
        both = load_split(str(built / BOTH_JPEG), split, normalise=False)
        assert len(ordinary) == len(both) == count
        assert [(s.label_b, s.caption) for s in both] == [(s.label_b, s.caption) for s in ordinary]
        for plain, jpeg in zip(ordinary, both, strict=True):
            assert Image.open(io.BytesIO(plain.image)).size == (NATIVE, NATIVE)
            assert _format(jpeg.image) == "JPEG"
            if plain.label_a == 0:
                assert plain.image == jpeg.image  # real items: the same bytes in both
            else:
                assert _format(plain.image) == "PNG"


def test_splits_are_balanced_on_the_ct2_label_set() -> None:
    items = clean_items(photographs(), 0, 100)
    counts = Counter(item.label_b for item in items)
    assert counts[0] == 50
    assert {counts[b] for b in range(1, len(GENERATORS))} == {10}
    assert all(JPEG_QUALITY[0] <= item.quality <= JPEG_QUALITY[1] for item in items)
    assert generators_of("smoke-shortcut") == generators_of("smoke-shortcut-jpeg") == GENERATORS


def test_the_fingerprint_is_there_but_fainter_than_in_smoke(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    photos = photographs()

    def pixels(faint: float) -> list[np.ndarray]:
        monkeypatch.setattr(smoke_shortcut, "FAINT", faint)
        items = clean_items(photos, 1, 20)
        return [np.asarray(item.image, np.float64) for item in items if item.label_b]

    unmarked, full, faint = pixels(0.0), pixels(1.0), pixels(FAINT)
    assert len(faint) == 10
    for photo, strong, weak in zip(unmarked, full, faint, strict=True):
        assert weak.shape == (NATIVE, NATIVE, 3)
        change, full_change = np.abs(weak - photo).mean(), np.abs(strong - photo).mean()
        assert change > 1.0  # present ...
        assert change == pytest.approx(FAINT * full_change, rel=0.15)  # ... at FAINT strength


@pytest.mark.parametrize("spec", ["smoke-shortcut:3", "smoke-shortcut-jpeg:", "smoke-shortcut:x"])
def test_a_shortcut_set_with_a_class_count_is_refused(spec: str) -> None:
    with pytest.raises(DataError, match="without :N"):
        generators_of(spec)

"""The named degradations of robustness evaluation and augmentation."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image

from training.augment import AugmentConfig, augment
from training.degrade import DEGRADATIONS, pick

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    rows, cols = np.mgrid[0:96, 0:128]
    smooth = np.stack([rows * 2, cols * 2, (rows + cols)], axis=-1) % 256
    noise = np.random.default_rng(0).integers(0, 40, (96, 128, 3))
    return Image.fromarray((smooth + noise).clip(0, 255).astype(np.uint8))


def test_the_list_is_the_issue_list() -> None:
    assert list(DEGRADATIONS) == [
        "jpeg_q95",
        "jpeg_q75",
        "jpeg_q50",
        "resize_50",
        "resize_25",
        "crop",
        "webp",
        "screenshot",
        "noise",
    ]


@pytest.mark.parametrize("name", list(DEGRADATIONS))
def test_each_degradation_is_deterministic_rgb_and_changes_the_pixels(
    photo: Image.Image, name: str
) -> None:
    degrade = DEGRADATIONS[name]
    out = degrade(photo)
    assert out.mode == "RGB"
    assert out.tobytes() == degrade(photo).tobytes()
    assert out.size != photo.size or out.tobytes() != photo.tobytes()


def test_sizes(photo: Image.Image) -> None:
    assert DEGRADATIONS["resize_50"](photo).size == (64, 48)
    assert DEGRADATIONS["resize_25"](photo).size == (32, 24)
    assert DEGRADATIONS["crop"](photo).size == (90, 67)
    assert DEGRADATIONS["screenshot"](photo).size == (102, 77)
    assert DEGRADATIONS["jpeg_q50"](photo).size == photo.size


def test_lower_jpeg_quality_loses_more(photo: Image.Image) -> None:
    pixels = np.asarray(photo, dtype=np.float64)

    def error(name: str) -> float:
        return float(
            np.abs(np.asarray(DEGRADATIONS[name](photo), dtype=np.float64) - pixels).mean()
        )

    assert error("jpeg_q95") < error("jpeg_q75") < error("jpeg_q50")


def test_odd_inputs_come_out_rgb() -> None:
    tiny_grey = Image.new("L", (5, 3), 7)
    clear = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    for degrade in DEGRADATIONS.values():
        assert degrade(tiny_grey).mode == "RGB"
        assert degrade(clear).mode == "RGB"
        assert min(degrade(tiny_grey).size) >= 3


def test_pick_by_name_or_all_and_refuse_unknown_names() -> None:
    assert list(pick("webp, jpeg_q50")) == ["webp", "jpeg_q50"]
    assert list(pick("all")) == list(DEGRADATIONS)
    assert list(pick("formats")) == ["jpeg_q95", "jpeg_q75", "jpeg_q50", "webp", "screenshot"]
    assert AugmentConfig().degradations == tuple(pick("formats"))
    assert pick(("noise",))["noise"] is DEGRADATIONS["noise"]
    with pytest.raises(ValueError, match=r"unknown degradation.*jpeg_q10.*known: jpeg_q95"):
        pick("jpeg_q75,jpeg_q10")
    with pytest.raises(ValueError, match="blur"):
        AugmentConfig(degradations=("blur",))


def test_augmentation_applies_the_named_degradations(photo: Image.Image) -> None:
    only_webp = AugmentConfig(
        crop_p=0, resize_p=0, blur_p=0, noise_p=0, jpeg_p=0, degrade_p=1.0, degradations=("webp",)
    )
    out = augment(photo, random.Random(0), only_webp)
    assert out.tobytes() == DEGRADATIONS["webp"](photo).tobytes()
    never = AugmentConfig(crop_p=0, resize_p=0, blur_p=0, noise_p=0, jpeg_p=0, degradations=())
    assert augment(photo, random.Random(0), never).tobytes() == photo.tobytes()


def test_webp_really_is_webp(photo: Image.Image) -> None:
    # Pillow without WebP support would raise; the degradation would then be a silent no-op.
    buffer = io.BytesIO()
    photo.save(buffer, format="WEBP", quality=75)
    assert Image.open(io.BytesIO(buffer.getvalue())).format == "WEBP"

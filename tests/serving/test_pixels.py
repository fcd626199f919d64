"""serving.model.pixels against the reference: transformers' CLIP image processor.

The tolerance: every normalised value within two 8-bit grey levels of the reference
(2 / (255 * std), 0.030 for CLIP's smallest std), at most 2 % of values off at all (the antialiased
bicubic kernels of torch and Pillow round a few pixels differently). On the smoke test split the
trained tiny detector decides every item alike from the server's path (reduced decode, this
pipeline) and the reference's (full decode, CLIP's processor), p_ai within 0.01.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from serving.imageio import decode_image
from serving.model.config import PreprocessConfig
from serving.model.pixels import PixelPipeline, resized_size
from serving.model.predictor import Predictor
from serving.model.preprocess import Preprocessor, make_image_processor
from serving.model.presets import build_preset
from training.data import load_split

CONFIG = PreprocessConfig()
LEVEL = 1 / (255 * min(CONFIG.image_std))
TOLERANCE = 2 * LEVEL + 1e-6
MAX_OFF_FRACTION = 0.02


def picture(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A smooth random picture of ``size`` (a bicubic blow-up of 8x8 random pixels)."""
    coarse = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC).convert(mode)


def reference(images: list[Image.Image]) -> torch.Tensor:
    out = make_image_processor(CONFIG)(images=images, return_tensors="pt")
    pixels: torch.Tensor = out["pixel_values"]
    return pixels


def assert_close(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape
    assert got.dtype == torch.float32
    off = (got - want).abs()
    assert float(off.max()) <= TOLERANCE
    assert float((off > 1e-4).float().mean()) <= MAX_OFF_FRACTION


@pytest.mark.unit
@pytest.mark.parametrize(
    "size",
    [(224, 224), (256, 256), (640, 480), (480, 640), (1000, 333), (333, 1000), (225, 224)],
)
def test_downscaled_pictures_match_the_reference(size: tuple[int, int]) -> None:
    images = [picture(size, seed=seed) for seed in range(2)]
    assert_close(PixelPipeline(CONFIG)(images), reference(images))


@pytest.mark.unit
@pytest.mark.parametrize("size", [(1, 1), (3, 5), (123, 77), (200, 224)])
def test_upscaled_pictures_match_the_reference(size: tuple[int, int]) -> None:
    images = [picture(size)]
    assert_close(PixelPipeline(CONFIG)(images), reference(images))


@pytest.mark.unit
@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_other_modes_are_read_as_rgb(mode: str) -> None:
    image = picture((300, 240), mode)
    assert_close(PixelPipeline(CONFIG)([image]), reference([image.convert("RGB")]))


@pytest.mark.unit
def test_an_empty_batch_is_an_empty_tensor() -> None:
    assert tuple(PixelPipeline(CONFIG)([]).shape) == (0, 3, 224, 224)


@pytest.mark.unit
def test_the_input_image_is_left_as_it_was() -> None:
    image = picture((320, 240))
    before = image.tobytes()
    PixelPipeline(CONFIG)([image])
    assert image.tobytes() == before


@pytest.mark.unit
@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((224, 224), (224, 224)),
        ((640, 480), (298, 224)),
        ((480, 640), (224, 298)),
        ((7, 3), (522, 224)),
    ],
)
def test_resized_size_rounds_the_long_side_down(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert resized_size(*size, 224) == expected


@pytest.mark.unit
def test_a_processor_the_pipeline_does_not_reproduce_is_run_itself() -> None:
    built = build_preset("tiny", "fused")
    changed = make_image_processor(CONFIG)
    changed.resample = Image.Resampling.BILINEAR
    preprocessor = Preprocessor(built.config, built.tokenizer, changed)
    assert preprocessor.pixels is None
    image = picture((300, 200))
    expected = changed(images=[image], return_tensors="pt")["pixel_values"]
    assert torch.equal(preprocessor.pixel_values([image]), expected)
    assert built.preprocessor.pixels is not None


@pytest.mark.unit
def test_crops_made_ahead_and_a_kept_buffer_give_the_same_batch() -> None:
    pipeline = PixelPipeline(CONFIG)
    images = [picture(size, seed=seed) for seed, size in enumerate([(300, 200), (224, 224)])]
    fresh = pipeline(images)
    kept = torch.full((4, 3, 224, 224), 7.0)
    mixed = pipeline([pipeline.crop(images[0]), images[1]], out=kept)
    assert torch.equal(mixed, fresh)
    assert mixed.data_ptr() == kept.data_ptr()  # the kept rows were filled, not a new tensor
    built = build_preset("tiny", "fused")
    tall = picture((224, 4000))
    prepared = built.preprocessor.prepare(tall)
    assert torch.equal(prepared, pipeline.crop(tall))
    # A crop of its own: not a view keeping the whole resized image alive.
    assert prepared.untyped_storage().nbytes() == 3 * 224 * 224
    changed = make_image_processor(CONFIG)
    changed.resample = Image.Resampling.BILINEAR
    runs_itself = Preprocessor(built.config, built.tokenizer, changed)
    assert runs_itself.prepare(images[0]) is images[0]  # its processor needs the image


def _jpeg(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    picture(size).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.mark.unit
def test_a_reduced_decode_stays_within_the_tolerance_of_the_full_reference() -> None:
    data = _jpeg((1600, 1200))
    served = PixelPipeline(CONFIG)([decode_image(data, target_side=CONFIG.decode_side)])
    full = reference([decode_image(data)])
    assert float((served - full).abs().max()) <= 0.05


@pytest.mark.slow
def test_smoke_decisions_agree_with_the_reference_processor(trained_tiny: Path) -> None:
    predictor = Predictor.from_checkpoint(trained_tiny, device="cpu")
    samples = load_split("smoke", "test", normalise=False)
    side = predictor.config.preprocess.decode_side
    served_images = [decode_image(sample.image, target_side=side) for sample in samples]
    full_images = [decode_image(sample.image) for sample in samples]
    captions = [sample.caption for sample in samples]
    served = predictor.predict(served_images, captions)
    assert predictor._preprocess.pixels is not None
    predictor._preprocess.pixels = None  # the same model on the reference processor
    expected = predictor.predict(full_images, captions)
    assert [p.decision for p in served] == [p.decision for p in expected]
    assert max(abs(a.p_ai - b.p_ai) for a, b in zip(served, expected, strict=True)) < 0.01

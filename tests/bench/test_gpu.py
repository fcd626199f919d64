"""bench/gpu.sh and bench.gpu on the CPU: device choice, buckets, the CPU fallback of the
decoder, the device's pre-processing against the CPU pipeline, and a run end to end."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.gpu import BUCKETS, DevicePath, _corpus, bucket, crop_on_device, pick_device
from serving.model.config import PreprocessConfig
from serving.model.pixels import PixelPipeline
from serving.model.presets import build_preset

ROOT = Path(__file__).resolve().parents[2]
GPU_QUICK = ("--device", "cpu", "--quick", "--batch", "8", "--tiny")


@pytest.mark.unit
def test_auto_picks_the_cpu_without_a_gpu_and_cuda_is_refused() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert pick_device("auto").type == "cpu"
    assert pick_device("cpu").type == "cpu"
    with pytest.raises(SystemExit, match="no usable GPU"):
        pick_device("cuda")


@pytest.mark.unit
@pytest.mark.parametrize(("count", "expected"), [(1, 1), (2, 8), (8, 8), (33, 64), (256, 256)])
def test_a_pass_is_padded_to_the_smallest_bucket_that_holds_it(count: int, expected: int) -> None:
    assert bucket(count) == expected


@pytest.mark.unit
def test_buckets_cap_a_pass_and_refuse_an_empty_one() -> None:
    assert bucket(10_000) == BUCKETS[-1]
    with pytest.raises(ValueError, match="at least one"):
        bucket(0)


@pytest.mark.unit
@pytest.mark.parametrize("size", [(256, 256), (640, 480), (123, 77)])
def test_the_device_crop_matches_the_cpu_pipeline(size: tuple[int, int]) -> None:
    config = PreprocessConfig()
    coarse = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
    levels = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    on_device = crop_on_device(levels, config)
    on_cpu = PixelPipeline(config).crop(image).float()
    assert on_device.shape == on_cpu.shape
    assert float((on_device - on_cpu).abs().max()) <= 2.0  # grey levels


@pytest.mark.unit
def test_the_cpu_decodes_every_format_and_bad_items_are_refused_alone() -> None:
    path = DevicePath(build_preset("tiny", "fused"), torch.device("cpu"), "fp32", "none")
    images, _ = _corpus()
    png = next(data for data in images if data.startswith(b"\x89PNG"))
    truncated = images[0][: len(images[0]) // 3]
    batch = [images[0], png, b"not an image", truncated]
    decoded = path.decode(batch)
    assert decoded.on_device == 0
    assert decoded.images[0] is not None
    assert decoded.images[1] is not None
    assert decoded.errors[:3] == [None, None, "undecodable_image"]
    assert decoded.errors[3] == "truncated_image"
    p_ai = path.scores(batch, ["", "a caption", "", ""])
    assert p_ai[2:] == [None, None]
    assert all(p is not None and 0.0 <= p <= 1.0 for p in p_ai[:2])


@pytest.mark.slow
def test_the_script_runs_end_to_end_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHON": str(ROOT / ".venv" / "bin" / "python")}
    done = subprocess.run(
        [str(ROOT / "bench" / "gpu.sh"), *GPU_QUICK, "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "items/s (goal 5000" in done.stdout
    figures = json.loads(out.read_text())
    assert figures["device"] == "cpu"
    assert figures["refused"] == 0
    assert figures["items_per_s"] > 0

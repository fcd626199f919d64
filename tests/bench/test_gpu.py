"""bench/gpu.sh and bench.gpu on the CPU: device choice, the handler's steps as the benchmark
drives them, and a run end to end."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from bench.gpu import _corpus, handler_on, pick_device, scores
from serving.model.presets import build_preset
from serving.torchserve.decoding import ImageReader

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
def test_the_handlers_steps_score_every_format_and_refuse_bad_items_alone() -> None:
    cpu = torch.device("cpu")
    handler = handler_on(build_preset("tiny", "fused"), cpu, "fp32", 8, compiled=False)
    assert type(handler.reader) is ImageReader  # the CPU's reader: there is no device decoder
    images, _ = _corpus()
    png = next(data for data in images if data.startswith(b"\x89PNG"))
    truncated = images[0][: len(images[0]) // 3]
    p_ai = scores(handler, [images[0], png, b"not an image", truncated], ["", "a caption", "", ""])
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
    assert figures["jpeg_1024mb"]["items_per_s"] > 0

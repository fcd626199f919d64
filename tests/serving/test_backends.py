"""Backends: every backend and precision scores like torch fp32 on the tiny model (OpenVINO int8
calibrated by NNCF, with the test's items or synthetic ones), the agreement check judges
precisions as documented, and bad exported graphs are refused clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serving.errors import CheckpointError
from serving.model.agreement import MAX_P_AI_CHANGE, compare, near_edges
from serving.model.backend_choice import check_backend, default_backend, resolve_precision
from serving.model.backends import (
    TEXT_FILE,
    VISION_FILE,
    export_encoders,
    graph_files,
    load_encoders,
)
from serving.model.checkpoint import load_checkpoint, save_checkpoint
from serving.model.config import DetectorConfig
from serving.model.openvino_int8 import calibration_batches
from serving.model.predictor import Predictor
from serving.model.presets import build_preset
from serving.torchserve.archive import ArchiveError, ExportOptions

pytestmark = pytest.mark.unit

# Seven images and captions of different lengths, scored in passes of 3, 3 and 1: the exported
# graphs see several batch sizes and caption lengths.
IMAGES = [Image.new("RGB", (40 + 10 * i, 50), (30 * i, 120, 200 - 20 * i)) for i in range(7)]
CAPTIONS: list[str | None] = ["a cat", None, "", "two dogs on a beach at dusk", "x", None, "car"]
BANDS = DetectorConfig.model_validate(
    {"architecture": "clip-linear", "vision_config": {}, "ai_threshold": 0.8}
)

# Largest p_ai difference from torch fp32 on the untrained tiny model (its p_ai sit near 0.5,
# where a logit error moves p_ai the most).
TOLERANCE = {"fp32": 1e-4, "bf16": 0.02, "int8": MAX_P_AI_CHANGE}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = build_preset("tiny", "fused", name="tiny-backends", version="1")
    directory = tmp_path_factory.mktemp("checkpoint")
    save_checkpoint(built.model, built.tokenizer, built.image_processor, built.config, directory)
    return directory


@pytest.fixture(scope="module")
def exported(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny model's encoders exported once per graph: fp32 and int8 ONNX, and OpenVINO's
    int8 calibrated on the test's own items."""
    loaded = load_checkpoint(checkpoint)
    root = tmp_path_factory.mktemp("encoders")
    graphs = {
        precision: export_encoders(loaded.model, root / precision, precision=precision)
        for precision in ("fp32", "int8")
    }
    graphs["openvino-int8"] = export_encoders(
        loaded.model,
        root / "openvino-int8",
        precision="int8",
        backend="openvino",
        calibration=calibration_batches(loaded.preprocessor, IMAGES, CAPTIONS, batch=4),
    )
    return graphs


def _graph(backend: str, precision: str) -> str:
    if (backend, precision) == ("openvino", "int8"):
        return "openvino-int8"
    return "int8" if precision == "int8" else "fp32"


@pytest.fixture(scope="module")
def reference(checkpoint: Path) -> np.ndarray:
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", precision="fp32", max_batch=3)
    return predictor.scores(IMAGES, CAPTIONS).p_ai


@pytest.mark.parametrize(
    ("backend", "precision"),
    [
        ("onnxruntime", "int8"),
        ("onnxruntime", "fp32"),
        ("openvino", "int8"),
        ("openvino", "bf16"),
        ("openvino", "fp32"),
        ("torch", "bf16"),
        ("torch", "int8"),
    ],
)
def test_each_backend_scores_like_torch_fp32(
    checkpoint: Path,
    exported: dict[str, Path],
    reference: np.ndarray,
    backend: str,
    precision: str,
) -> None:
    graph = exported[_graph(backend, precision)]
    predictor = Predictor.from_checkpoint(
        checkpoint,
        device="cpu",
        backend=backend,
        precision=precision,
        encoders=graph,
        max_batch=3,
    )
    assert (predictor.backend, predictor.precision) == (backend, precision)
    p_ai = predictor.scores(IMAGES, CAPTIONS).p_ai
    assert p_ai.shape == reference.shape
    assert np.abs(p_ai - reference).max() <= TOLERANCE[precision]
    # An item scores the same alone as in a batch of other caption lengths (ONNX Runtime's int8
    # quantises activations per batch, so its scores depend a little on the batch).
    [alone] = predictor.scores(IMAGES[3:4], CAPTIONS[3:4]).p_ai
    assert alone == pytest.approx(p_ai[3], abs=TOLERANCE[precision] / 10)


def test_exported_graphs_are_int8_only_when_asked(exported: dict[str, Path]) -> None:
    import onnx

    for name in (VISION_FILE, TEXT_FILE):
        ops = {
            precision: {node.op_type for node in onnx.load(exported[precision] / name).graph.node}
            for precision in ("fp32", "int8")
        }
        assert "DynamicQuantizeLinear" in ops["int8"] or "DynamicQuantizeMatMul" in ops["int8"]
        assert "MatMulInteger" in ops["int8"]
        assert not {"DynamicQuantizeLinear", "MatMulInteger"} & ops["fp32"]


def test_openvino_int8_is_its_own_statically_quantised_graph(exported: dict[str, Path]) -> None:
    import openvino as ov

    directory = exported["openvino-int8"]
    assert graph_files("openvino", "int8") == ("vision.xml", "text.xml")
    assert {p.name for p in directory.iterdir()} == {
        "vision.xml",
        "vision.bin",
        "text.xml",
        "text.bin",
    }
    for name in graph_files("openvino", "int8"):
        ops = {op.get_type_name() for op in ov.Core().read_model(str(directory / name)).get_ops()}
        assert "FakeQuantize" in ops  # activations and weights quantised with fixed ranges


def test_openvino_int8_without_a_calibration_set_uses_synthetic_inputs(
    checkpoint: Path, reference: np.ndarray, tmp_path: Path
) -> None:
    target = tmp_path / "encoders"
    predictor = Predictor.from_checkpoint(
        checkpoint, device="cpu", backend="openvino", precision="int8", encoders=target
    )
    assert {p.name for p in target.iterdir()} >= {"vision.xml", "text.xml"}
    p_ai = predictor.scores(IMAGES, CAPTIONS).p_ai
    assert np.abs(p_ai - reference).max() <= TOLERANCE["int8"]


def test_missing_encoders_are_exported_into_the_directory_given(
    checkpoint: Path, reference: np.ndarray, tmp_path: Path
) -> None:
    target = tmp_path / "encoders"
    predictor = Predictor.from_checkpoint(
        checkpoint, device="cpu", backend="onnxruntime", encoders=target
    )
    assert predictor.precision == "int8"  # auto on a CPU
    assert {p.name for p in target.iterdir()} == {VISION_FILE, TEXT_FILE}
    p_ai = predictor.scores(IMAGES, CAPTIONS).p_ai
    assert np.abs(p_ai - reference).max() <= TOLERANCE["int8"]


@pytest.mark.parametrize(
    ("content", "backend", "precision"),
    [
        (b"", "onnxruntime", "int8"),
        (b"not a graph at all", "onnxruntime", "int8"),
        (b"\x08\x07" + b"\xff" * 64, "openvino", "fp32"),
        (None, "onnxruntime", "int8"),  # the text graph missing
        (b"<net><layers>", "openvino", "int8"),  # a truncated IR
        (None, "openvino", "int8"),
    ],
)
def test_a_bad_or_missing_graph_is_refused_naming_the_file(
    exported: dict[str, Path],
    tmp_path: Path,
    content: bytes | None,
    backend: str,
    precision: str,
) -> None:
    source = exported[_graph(backend, precision)]
    vision, text = graph_files(backend, precision)
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in {vision, vision.replace(".xml", ".bin")}:
        (broken / name).write_bytes((source / name).read_bytes())
    if content is not None:
        (broken / text).write_bytes(content)
    with pytest.raises(CheckpointError, match=text):
        load_encoders(broken, backend, precision, threads=1)


def test_choices_are_checked_before_any_model_is_loaded() -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        check_backend("tensorrt", "int8")
    with pytest.raises(ValueError, match="runs precision"):
        check_backend("onnxruntime", "bf16")
    with pytest.raises(ValueError, match="fused architecture"):
        check_backend("openvino", "int8", "clip-linear")
    with pytest.raises(ArchiveError, match="runs precision"):
        ExportOptions(backend="onnxruntime", precision="fp16")
    with pytest.raises(ArchiveError, match="unknown backend"):
        ExportOptions(backend="../../etc")
    assert resolve_precision("onnxruntime", "auto", "cpu") == "int8"
    assert resolve_precision("openvino", "auto", "cpu") == "bf16"
    assert resolve_precision("torch", "auto", "cpu") == "fp32"
    assert resolve_precision("onnxruntime", "auto", "cuda") == "fp16"
    assert (default_backend("fused"), default_backend("clip-contrastive")) == (
        "openvino",
        "torch",
    )


def test_agreement_is_judged_near_band_edges_only() -> None:
    # Thresholds 0.2 and 0.8: 0.5 and 0.95 are far from both, the others within 0.1 of one.
    reference = np.array([0.5, 0.95, 0.25, 0.79, 0.81, 0.15])
    assert near_edges(reference, BANDS).tolist() == [False, False, True, True, True, True]
    # Far items may move a lot without counting; 0.79 -> 0.80 crosses into ai_generated.
    reduced = np.array([0.9, 0.55, 0.26, 0.80, 0.81, 0.15])
    agreement = compare(reference, reduced, BANDS)
    assert (agreement.items, agreement.near, agreement.agree) == (6, 4, 3)
    assert agreement.agree_all == 3  # 0.5 -> 0.9 and 0.95 -> 0.55 changed theirs too
    assert agreement.rate == pytest.approx(0.75)
    assert agreement.max_change == pytest.approx(0.01)
    assert not agreement.passes


def test_agreement_passes_within_its_bounds_and_needs_near_items() -> None:
    reference = np.linspace(0.1, 0.3, 201)
    assert compare(reference, reference + 0.001, BANDS).passes
    # Agreement intact but a change over the bound: fails.
    assert not compare(reference, reference + MAX_P_AI_CHANGE * 1.5, BANDS).passes
    # Nothing near an edge: nothing was shown.
    far = np.array([0.5, 0.99, 0.01])
    assert not compare(far, far, BANDS).passes
    with pytest.raises(ValueError, match="one score per item"):
        compare(reference, reference[:-1], BANDS)

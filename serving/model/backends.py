"""Where the detector's encoders run: torch in process, or an exported graph on ONNX Runtime or
OpenVINO.

The fused detector spends nearly all its time in its two encoders (BERT on the caption, the CLIP
vision tower on the image); its fusion layer and heads are a few small matrices. A backend other
than torch therefore replaces the encoders only: :func:`export_encoders` writes each encoder as an
ONNX graph with a dynamic batch and a dynamic caption length (so captions stay padded to the
longest of their batch), quantising its linear layers' weights to int8 (activations quantised per
batch at run time: ONNX Runtime's dynamic quantisation) when the precision is ``int8``, or, for
OpenVINO int8, quantising weights and activations statically with NNCF on a calibration set
(:mod:`serving.model.openvino_int8`, written as OpenVINO IR); :func:`load_encoders` runs those
graphs with the cores given, and the fusion layer and heads stay in torch fp32.

Which backend runs at which precision is :mod:`serving.model.backend_choice`; torch's own
precisions, and ``torch.compile``, are applied by :mod:`serving.model.predictor`.

Exported backends serve the fused architecture (the one that is measured and served); the CLIP
architectures stay on torch.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, Protocol

import numpy as np
import torch
from torch import nn

from serving.errors import CheckpointError
from serving.model.detector import Detector, FusedDetector
from serving.model.openvino_int8 import Batch, quantize_graph, synthetic_batches

__all__ = [
    "Encoders",
    "ExportedEncoders",
    "export_encoders",
    "graph_files",
    "load_encoders",
    "set_threads",
]

VISION_FILE: Final[str] = "vision.onnx"
TEXT_FILE: Final[str] = "text.onnx"
_OPSET: Final[int] = 18


def graph_files(backend: str, precision: str) -> tuple[str, str]:
    """The vision and text graphs' file names for ``backend`` at ``precision``: ONNX, except
    OpenVINO's own int8 (IR, each ``.xml`` with a ``.bin`` beside it)."""
    if (backend, precision) == ("openvino", "int8"):
        return "vision.xml", "text.xml"
    return VISION_FILE, TEXT_FILE


class Encoders(Protocol):
    """The two encoders of the fused detector, whatever runs them."""

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor: ...

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor: ...


def export_encoders(
    model: Detector,
    directory: Path,
    *,
    precision: str,
    backend: str = "onnxruntime",
    calibration: Sequence[Batch] | None = None,
) -> Path:
    """Write ``model``'s encoders as graphs for ``backend`` into ``directory`` (created), int8
    when ``precision`` is ``int8``, else fp32; returns ``directory``. ``model`` must be fused,
    fp32. OpenVINO int8 is calibrated on ``calibration`` (default: synthetic inputs)."""
    if not isinstance(model, FusedDetector):
        raise ValueError("only the fused detector's encoders can be exported")
    directory.mkdir(parents=True, exist_ok=True)
    config = model.detector_config
    size = config.preprocess.image_size
    model = model.eval()
    vocabulary = int(model.text.config.vocab_size)
    ids = torch.randint(5, max(6, vocabulary), (2, 7))
    with tempfile.TemporaryDirectory(prefix=".onnx-", dir=directory) as scratch:
        staged = Path(scratch)
        _export(_ImageEncoder(model), (torch.randn(2, 3, size, size),), staged / VISION_FILE)
        _export(_TextEncoder(model), (ids, torch.ones_like(ids)), staged / TEXT_FILE)
        if (backend, precision) == ("openvino", "int8"):
            batches = calibration or synthetic_batches(size, vocabulary)
            feeds = _calibration_feeds(batches)
            for name, target, feed in zip(
                (VISION_FILE, TEXT_FILE), graph_files(backend, precision), feeds, strict=True
            ):
                quantize_graph(staged / name, directory / target, feed)
            return directory
        for name in (VISION_FILE, TEXT_FILE):
            if precision == "int8":
                _quantize(staged / name, directory / name)
            else:
                (staged / name).replace(directory / name)
    return directory


def _calibration_feeds(
    batches: Sequence[Batch],
) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """The vision and the text graph's inputs by name, one dict per calibration batch."""
    vision = [{"pixel_values": pixels.float().numpy()} for pixels, _, _ in batches]
    text = [
        {"input_ids": ids.long().numpy(), "attention_mask": mask.long().numpy()}
        for _, ids, mask in batches
    ]
    return vision, text


def load_encoders(directory: Path, backend: str, precision: str, threads: int) -> ExportedEncoders:
    """The encoders exported in ``directory``, run by ``backend`` with ``threads`` threads.

    Raises CheckpointError naming a missing or unloadable graph, ValueError for a backend that
    runs no exported graph.
    """
    runners = {"onnxruntime": _onnxruntime_runner, "openvino": _openvino_runner}
    if backend not in runners:
        raise ValueError(f"backend {backend!r} does not run exported encoders")
    loaded: list[_Runner] = []
    for name in graph_files(backend, precision):
        path = directory / name
        if not path.is_file():
            raise CheckpointError(
                f"{path} is missing: export the encoders for backend {backend} {precision} "
                "(aigis export --backend ...) first",
                str(path),
            )
        try:
            loaded.append(runners[backend](path, precision, threads))
        except Exception as exc:  # each runtime raises its own types for a bad graph
            raise CheckpointError(
                f"{path} cannot be loaded by {backend} ({type(exc).__name__}: "
                f"{str(exc)[:300]}); export the archive again",
                str(path),
            ) from None
    return ExportedEncoders(*loaded)


_Runner = Callable[[dict[str, np.ndarray]], np.ndarray]


class ExportedEncoders:
    """The fused detector's encoders as two compiled graphs; torch tensors in and out."""

    def __init__(self, vision: _Runner, text: _Runner) -> None:
        self._vision = vision
        self._text = text

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pixels = pixel_values.detach().float().contiguous().numpy()
        return torch.from_numpy(self._vision({"pixel_values": pixels}))

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        inputs = {
            "input_ids": input_ids.detach().long().numpy(),
            "attention_mask": attention_mask.detach().long().numpy(),
        }
        return torch.from_numpy(self._text(inputs))


def drop_encoders(model: FusedDetector) -> None:
    """Free the torch encoders of a model whose encoders run elsewhere (about 800 MB for the
    base model); its fusion layer and heads stay."""
    model.text = nn.Identity()  # type: ignore[assignment]  # never called again
    model.vision = nn.Identity()  # type: ignore[assignment]


class _ImageEncoder(nn.Module):
    def __init__(self, model: FusedDetector) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixel_values)


class _TextEncoder(nn.Module):
    def __init__(self, model: FusedDetector) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(input_ids, attention_mask)


def _export(module: nn.Module, example: tuple[torch.Tensor, ...], target: Path) -> None:
    """``module`` as one self-contained ONNX file, its batch (and caption length) dynamic."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    if len(example) == 1:
        names = ["pixel_values"]
        shapes: dict[str, dict[int, object]] = {"pixel_values": {0: batch}}
    else:
        length = torch.export.Dim("length", min=2, max=4096)
        names = ["input_ids", "attention_mask"]
        shapes = {name: {0: batch, 1: length} for name in names}
    # The exporter reports its progress on stdout and warns about internals nobody can act on.
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            str(target),
            input_names=names,
            output_names=["features"],
            dynamic_shapes=shapes,
            opset_version=_OPSET,
            dynamo=True,
            external_data=False,
        )
    exporter_log.setLevel(level)


def _quantize(source: Path, target: Path) -> None:
    """Dynamic int8: weights of MatMul/Gemm quantised per output channel, activations per
    batch at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().disabled, was = True, logging.getLogger().disabled
    try:  # the quantiser logs an advice about pre-processing on the root logger
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Gemm"],
        )
    finally:
        logging.getLogger().disabled = was


def _onnxruntime_runner(path: Path, precision: str, threads: int) -> _Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
        [features] = session.run(["features"], inputs)
        return np.asarray(features, dtype=np.float32)

    return run


def _openvino_runner(path: Path, precision: str, threads: int) -> _Runner:
    import openvino as ov

    hint = "bf16" if precision == "bf16" else "f32"  # int8 comes from the graph's own ops
    compiled = ov.Core().compile_model(
        str(path),
        "CPU",
        {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint},
    )
    request = compiled.create_infer_request()

    def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
        outputs = request.infer(inputs)
        return np.array(outputs[compiled.output(0)], dtype=np.float32)

    return run


def set_threads(threads: int, workers: int) -> None:
    """Threads of this process (torch's, and the exported backends', which read torch's) so
    that ``workers`` processes together use each core of this process's affinity once;
    ``threads`` > 0 overrides."""
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads or max(1, cores // max(1, workers)))
    # One forward pass at a time per worker; fixed already if torch ran something in parallel.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)

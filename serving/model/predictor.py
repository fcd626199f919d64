"""Batched inference on a checkpoint: images and captions in, calibrated predictions out.

The scores are read into :class:`~serving.client.prediction.Prediction` objects by
:func:`~serving.client.prediction.read_scores`, whose module says what they mean.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import numpy as np
import torch
from PIL import Image

from serving.client.prediction import Prediction, read_scores
from serving.model.backend_choice import check_backend, resolve_precision
from serving.model.backends import Encoders
from serving.model.captions import TextFeatureCache
from serving.model.checkpoint import Checkpoint, load_checkpoint
from serving.model.config import DetectorConfig
from serving.model.detector import Detector, FusedDetector

__all__ = ["PRECISIONS", "Prediction", "Predictor", "Scores", "with_precision"]

log = logging.getLogger(__name__)

PRECISIONS: Final[tuple[str, ...]] = ("auto", "fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class Scores:
    """Raw calibrated scores of a batch, for evaluation: arrays instead of Prediction objects."""

    p_ai: np.ndarray
    """(n,) calibrated P(AI)."""
    generator_given_ai: np.ndarray
    """(n, G) P(generator | AI); column 0 (real) is 0."""
    logits_a: np.ndarray
    """(n,) uncalibrated head A logits (for fitting a temperature)."""


class Predictor:
    """A loaded checkpoint ready for inference. Not thread-safe: one caller at a time."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        device: torch.device,
        dtype: torch.dtype,
        max_batch: int,
        caption_cache: int = 4096,
        encoders: Encoders | None = None,
        backend: str = "torch",
        precision: str = "fp32",
    ) -> None:
        """``caption_cache``: how many captions' text features to keep (0: none), for a model
        that reads captions. ``encoders``: what runs the fused model's encoders when not its own
        torch modules (serving.model.backends), ``backend`` and ``precision`` name them."""
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.checkpoint = checkpoint
        self.config: DetectorConfig = checkpoint.config
        self.device = device
        self.dtype = dtype
        self.max_batch = max_batch
        self._preprocess = checkpoint.preprocessor
        self._model = checkpoint.model
        self.backend = backend
        self.precision = precision
        self._encoders: Encoders = encoders or self._model
        self.captions: TextFeatureCache | None = None
        if caption_cache and isinstance(self._model, FusedDetector):
            self.captions = TextFeatureCache(caption_cache)
        self._pixels: torch.Tensor | None = None
        """The fused model's input rows, kept from pass to pass (see _pixel_rows)."""

    @classmethod
    def from_checkpoint(cls, path: str | Path, **options: Any) -> Predictor:
        """Load ``path`` for inference; ``options`` are :meth:`from_loaded`'s. Raises
        CheckpointError for a bad checkpoint, ValueError for a bad option."""
        return cls.from_loaded(load_checkpoint(path, device="cpu"), **options)

    @classmethod
    def from_loaded(
        cls,
        checkpoint: Checkpoint,
        *,
        device: str | torch.device | None = None,
        precision: str = "auto",
        max_batch: int = 32,
        caption_cache: int = 4096,
        backend: str = "torch",
        encoders: Path | None = None,
        compile: bool = False,
    ) -> Predictor:
        """``checkpoint`` (loaded on the CPU, or built from a preset) ready for inference.

        ``device`` None picks cuda when available, else cpu. ``backend`` (torch, onnxruntime,
        openvino; serving.model.backends) runs the encoders; on a GPU it is always torch.
        ``precision``: ``auto`` (fp16 on cuda; on cpu fp32 for torch, int8 for onnxruntime,
        bf16 for openvino),
        ``fp32``, ``fp16``, ``bf16``, or ``int8`` (torch: dynamic quantisation of the linear
        layers, CPU only). ``encoders``: the directory of the exported encoders (exported there
        first when missing; default a temporary directory). ``compile``: run torch's encoders
        through ``torch.compile``. Raises ValueError for a bad option.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if backend != "torch" and target.type != "cpu":
            log.warning(
                "backend %s runs on the CPU only; serving on %s with torch", backend, target
            )
            backend = "torch"
        check_backend(backend, precision, checkpoint.config.architecture)
        precision = resolve_precision(backend, precision, target.type)
        if precision == "int8" and target.type != "cpu":
            raise ValueError("int8 dynamic quantisation runs on the CPU only; use fp16 on a GPU")
        exported: Encoders | None = None
        if backend == "torch":
            model, dtype = with_precision(checkpoint.model, precision, target)
            if compile:
                model = compile_encoders(model)
        else:
            model, dtype = checkpoint.model, torch.float32
            exported = _exported_encoders(model, encoders, backend, precision)
        checkpoint = Checkpoint(
            checkpoint.config, model, checkpoint.tokenizer, checkpoint.image_processor
        )
        return cls(
            checkpoint,
            device=target,
            dtype=dtype,
            max_batch=max_batch,
            caption_cache=caption_cache,
            encoders=exported,
            backend=backend,
            precision=precision,
        )

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def version(self) -> str:
        return self.config.version

    @property
    def architecture(self) -> str:
        return self.config.architecture

    @property
    def generators(self) -> tuple[str, ...]:
        return self.config.generators

    @property
    def reads_caption(self) -> bool:
        return self.config.reads_caption

    @property
    def crops(self) -> bool:
        """Whether :meth:`prepare` makes the project's 8-bit crops (otherwise the checkpoint's
        own image processor runs, on whole images)."""
        return self._preprocess.pixels is not None

    def prepare(self, image: Image.Image) -> Image.Image | torch.Tensor:
        """``image``'s own share of the pre-processing (its crop), safe to run on other threads
        while this predictor works; :meth:`predict` takes what it returns as an image."""
        return self._preprocess.prepare(image)

    def predict(
        self, images: Sequence[Image.Image | torch.Tensor], captions: Sequence[str | None]
    ) -> list[Prediction]:
        """One Prediction per image, in order. Images must be RGB (see serving.imageio), or
        what :meth:`prepare` made of them."""
        scores = self.scores(images, captions)
        return [
            read_scores(float(p), conditional.tolist(), self.generators, self.config)
            for p, conditional in zip(scores.p_ai, scores.generator_given_ai, strict=True)
        ]

    def scores(
        self, images: Sequence[Image.Image | torch.Tensor], captions: Sequence[str | None]
    ) -> Scores:
        """Calibrated scores in forward passes of at most ``max_batch`` items."""
        if len(images) != len(captions):
            raise ValueError(f"{len(images)} images but {len(captions)} captions; give one each")
        logits_a: list[torch.Tensor] = []
        logits_b: list[torch.Tensor] = []
        for start in range(0, len(images), self.max_batch):
            stop = start + self.max_batch
            a, b = self.logits(images[start:stop], captions[start:stop])
            logits_a.append(a)
            logits_b.append(b)
        if not logits_a:
            n_gen = len(self.generators)
            return Scores(np.zeros(0), np.zeros((0, n_gen)), np.zeros(0))
        raw_a = torch.cat(logits_a)
        raw_b = torch.cat(logits_b)
        p_ai = torch.sigmoid(raw_a / self.config.temperature)
        conditional = torch.zeros_like(raw_b)
        conditional[:, 1:] = torch.softmax(raw_b[:, 1:], dim=-1)
        return Scores(p_ai.numpy(), conditional.numpy(), raw_a.numpy())

    @torch.inference_mode()
    def logits(
        self, images: Sequence[Image.Image | torch.Tensor], captions: Sequence[str | None]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Head A and head B logits of one forward pass, as float32 CPU tensors."""
        if isinstance(self._model, FusedDetector):
            return self._fused_logits(images, captions)
        inputs = self._preprocess(images, captions)
        moved = {
            key: value.to(self.device, dtype=self.dtype if value.is_floating_point() else None)
            for key, value in inputs.items()
        }
        out = self._model(**moved)
        return out.logits_a.float().cpu(), out.logits_b.float().cpu()

    @torch.inference_mode()
    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused model's logits on ready inputs, both encoders run (no caption cache): the
        model alone, as benchmarks time it."""
        model = cast(FusedDetector, self._model)
        text = self._encoders.encode_text(input_ids, attention_mask)
        image = self._encoders.encode_image(pixel_values.to(self.device, dtype=self.dtype))
        return model.fused_logits(*self._features(text, image))

    def _features(self, *features: torch.Tensor) -> list[torch.Tensor]:
        """Encoder outputs as the heads take them (exported encoders answer fp32 on the CPU)."""
        return [f.to(self.device, dtype=self.dtype) for f in features]

    def _fused_logits(
        self, images: Sequence[Image.Image | torch.Tensor], captions: Sequence[str | None]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused model's logits with each caption's text features from the cache, the
        text encoder run once on the distinct captions it does not hold."""
        model = cast(FusedDetector, self._model)
        pixels = self._preprocess.pixel_values(images, self._pixel_rows(len(images)))
        pixels = pixels.to(self.device, dtype=self.dtype)
        texts = [c or "" for c in captions]
        if self.captions is not None:
            text = self.captions.features(texts, self._encode_captions)
        else:
            text = self._encode_captions(texts)
        image = self._encoders.encode_image(pixels)
        logits_a, logits_b = model.fused_logits(*self._features(text, image))
        return logits_a.float().cpu(), logits_b.float().cpu()

    def _pixel_rows(self, rows: int) -> torch.Tensor | None:
        """A float buffer of ``max_batch`` input rows on the model's device, kept: a new one every
        pass (19 MB at batch 32) is mapped afresh by the system page by page, which took longer
        than filling it. None for a pass larger than ``max_batch`` or a checkpoint whose own
        processor runs (a new tensor then)."""
        if rows > self.max_batch or self._preprocess.pixels is None:
            return None
        if self._pixels is None:
            side = self.config.preprocess.image_size
            shape = (self.max_batch, 3, side, side)
            self._pixels = torch.empty(shape, dtype=torch.float32, device=self.device)
        return self._pixels

    def _encode_captions(self, captions: list[str]) -> torch.Tensor:
        encoded = self._preprocess.captions(captions)
        ids, mask = (encoded[k].to(self.device) for k in ("input_ids", "attention_mask"))
        return self._encoders.encode_text(ids, mask)


def compile_encoders(model: Detector) -> Detector:
    """``model`` with its encoders compiled by ``torch.compile`` (shapes dynamic: batch and
    caption length vary); the first passes of each new shape pay the compilation."""
    for name in ("text", "vision", "clip"):
        module = getattr(model, name, None)
        if isinstance(module, torch.nn.Module):
            setattr(model, name, torch.compile(module, dynamic=True))
    return model


def _exported_encoders(
    model: Detector, directory: Path | None, backend: str, precision: str
) -> Encoders:
    """The exported encoders of ``model`` in ``directory``, exported there first if missing;
    the model's own encoders are freed."""
    from serving.model.backends import drop_encoders, export_encoders, graph_files, load_encoders

    assert isinstance(model, FusedDetector)  # check_backend refused the others
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="aigis-encoders-"))
    if not (directory / graph_files(backend, precision)[0]).is_file():
        export_encoders(model, directory, precision=precision, backend=backend)
    drop_encoders(model)
    return load_encoders(directory, backend, precision, torch.get_num_threads())


def with_precision(
    model: Detector, precision: str, device: torch.device
) -> tuple[Detector, torch.dtype]:
    """The model converted for ``precision`` on ``device``, and the dtype its inputs need."""
    if precision == "auto":
        precision = "fp16" if device.type == "cuda" else "fp32"
    if precision == "int8":
        with warnings.catch_warnings():
            # torch announces the move of quantisation to torchao; nothing a caller can act on.
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated")
            warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated")
            quantized = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]  # untyped in torch
                model, {torch.nn.Linear}, dtype=torch.qint8
            )
        # quantize_dynamic returns a copy of the same class with quantised Linear layers.
        return cast(Detector, quantized).eval(), torch.float32
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    return model.to(device=device, dtype=dtype).eval(), dtype

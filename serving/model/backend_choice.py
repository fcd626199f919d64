"""Which backend runs the detector's encoders, at which precision: the names and their checks.

Torch-free, so the archive builder checks its options without loading a model; the backends
themselves are in :mod:`serving.model.backends`.

- ``torch``: ``fp32``, ``bf16``, ``fp16`` (GPU), ``int8`` (torch's dynamic quantisation);
- ``onnxruntime``: ``int8``, ``fp32``;
- ``openvino``: ``int8`` (the fp32 graph quantised statically by NNCF: OpenVINO's own int8,
  serving.model.openvino_int8), ``bf16`` (the fp32 graph run in bf16 where the CPU has bf16
  instructions), ``fp32``.

``auto`` is fp16 on a GPU (where every backend is torch); on a CPU it is fp32 for torch, int8
for onnxruntime and bf16 for openvino. A fused model's CPU archive gets openvino bf16 unless told
otherwise: the fastest precision that passed validation on a trained model; no int8 passed
(docs/serving.md#precision-and-backends).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BACKENDS",
    "ENCODERS_DIR",
    "PRECISIONS",
    "check_backend",
    "default_backend",
    "resolve_precision",
]

ENCODERS_DIR: Final[str] = "encoders"
"""The exported encoders' directory in an archive, beside ``checkpoint/``."""
BACKENDS: Final[tuple[str, ...]] = ("torch", "onnxruntime", "openvino")
PRECISIONS: Final[dict[str, tuple[str, ...]]] = {
    "torch": ("fp32", "bf16", "fp16", "int8"),
    "onnxruntime": ("int8", "fp32"),
    "openvino": ("int8", "bf16", "fp32"),
}


def check_backend(backend: str, precision: str, architecture: str | None = None) -> None:
    """Raise ValueError unless ``precision`` (or ``auto``) runs on ``backend`` for
    ``architecture`` (None: any)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    allowed = PRECISIONS[backend]
    if precision != "auto" and precision not in allowed:
        raise ValueError(
            f"backend {backend} runs precision {', '.join(allowed)} or auto, not {precision!r}"
        )
    if backend != "torch" and architecture not in (None, "fused"):
        raise ValueError(
            f"backend {backend} serves the fused architecture; serve {architecture} with "
            "backend torch"
        )


def resolve_precision(backend: str, precision: str, device_type: str) -> str:
    """``precision`` with ``auto`` replaced (see the module's doc)."""
    if precision != "auto":
        return precision
    if device_type == "cuda":
        return "fp16"
    return {"torch": "fp32", "openvino": "bf16"}.get(backend, "int8")


def default_backend(architecture: str) -> str:
    """The backend a CPU archive of ``architecture`` gets unless told otherwise: openvino (bf16)
    for the fused detector, the only architecture the exported backends serve."""
    return "openvino" if architecture == "fused" else "torch"

"""The handler's code path on a GPU, in process: JPEG bytes to scores for the base fused model.

    bench/gpu.sh [--device auto|cuda|cpu] [--quick] [--batch 256] [--json PATH]

(``bench/gpu.sh`` prepares the interpreter's path, then runs ``python -m bench.gpu``.) The model
is ``base-random`` built from its config (CLIP ViT-B/16 and BERT-base shapes, random weights, no
download). Per batch of image bytes:

1. the header checks of :func:`serving.imageio.probe_image` on the CPU (limits, format) for
   every item: a bad item is refused with its reason before any pixel is decoded;
2. JPEGs decoded on the device in one batched call (``torchvision.io.decode_jpeg`` on cuda,
   EXIF orientation applied); other formats, and any JPEG the device decoder refuses, through
   :func:`serving.imageio.decode_image` on the CPU, then moved to the device;
3. CLIP's pre-processing on the device (the same resize, crop and normalisation as
   :class:`serving.model.pixels.PixelPipeline`), in the model's dtype;
4. the image encoder on a batch padded to a fixed bucket size, so ``torch.compile`` (CUDA graphs
   with ``reduce-overhead``) sees a few shapes, each warmed up before timing; captions through
   the text feature cache the handler uses; then the fused heads and calibrated ``p_ai``.

Prints items/s against the 5,000 items/s goal and, with ``--json``, writes the figures for
``aigis bench --gpu``. ``--device cpu --quick`` runs every step that can run without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812  (torch's own spelling)

from serving.errors import ImageError
from serving.imageio import decode_image, probe_image
from serving.model.captions import TextFeatureCache
from serving.model.checkpoint import Checkpoint
from serving.model.config import PreprocessConfig
from serving.model.detector import FusedDetector
from serving.model.pixels import resized_size
from serving.model.predictor import with_precision

GOAL_ITEMS_PER_S = 5000.0
BUCKETS = (1, 8, 32, 64, 128, 256, 512)
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})


def pick_device(requested: str) -> torch.device:
    """``auto``: cuda when one is usable, else cpu. Asking for cuda without one is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch sees no usable GPU here; use --device cpu")
    return device


def bucket(count: int, buckets: Sequence[int] = BUCKETS) -> int:
    """The smallest bucket that holds ``count`` items (the largest bucket caps a pass)."""
    if count < 1:
        raise ValueError(f"a pass holds at least one item, not {count}")
    return next((size for size in buckets if size >= count), buckets[-1])


@dataclass
class Decoded:
    """One batch's images on the device, (3, H, W) uint8 each, and each item's error."""

    images: list[torch.Tensor | None]
    errors: list[str | None]
    on_device: int
    """How many were decoded by the device's own decoder."""


class DevicePath:
    """JPEG bytes to calibrated p_ai on one device: the handler's steps, batched."""

    def __init__(
        self, checkpoint: Checkpoint, device: torch.device, precision: str, compile_mode: str
    ) -> None:
        model, self.dtype = with_precision(checkpoint.model, precision, device)
        if not isinstance(model, FusedDetector):
            raise ValueError("the GPU benchmark runs the fused detector")
        self.model, self.device, self.config = model, device, checkpoint.config
        self.preprocess = checkpoint.config.preprocess
        self.tokenize = checkpoint.preprocessor.captions
        self.captions = TextFeatureCache(4096)
        self.encode_image: Any = model.encode_image
        if compile_mode != "none":
            self.encode_image = torch.compile(model.encode_image, mode=compile_mode, dynamic=False)
        mean = torch.tensor(self.preprocess.image_mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(self.preprocess.image_std, device=device).view(1, 3, 1, 1)
        self._scale, self._shift = 1.0 / (255.0 * std), -mean / std

    def decode(self, batch: Sequence[bytes]) -> Decoded:
        images: list[torch.Tensor | None] = [None] * len(batch)
        errors: list[str | None] = [None] * len(batch)
        jpegs: list[int] = []
        for index, data in enumerate(batch):
            try:
                fmt, _, _ = probe_image(data)
            except ImageError as exc:
                errors[index] = exc.reason
                continue
            if self.device.type == "cuda" and fmt in _JPEG_FORMATS:
                jpegs.append(index)
            else:
                images[index] = self._on_cpu(batch[index], errors, index)
        on_device = 0
        if jpegs:
            decoded = self._on_device([batch[i] for i in jpegs])
            for index, image in zip(jpegs, decoded, strict=True):
                if image is None:  # the device decoder refused it: the CPU decoder decides
                    images[index] = self._on_cpu(batch[index], errors, index)
                else:
                    images[index], on_device = image, on_device + 1
        return Decoded(images, errors, on_device)

    def _on_device(self, batch: list[bytes]) -> list[torch.Tensor | None]:
        from torchvision.io import ImageReadMode, decode_jpeg

        data = [torch.frombuffer(bytearray(item), dtype=torch.uint8) for item in batch]
        try:
            out = decode_jpeg(
                data, mode=ImageReadMode.RGB, device=self.device, apply_exif_orientation=True
            )
            return list(out)
        except RuntimeError:  # one bad JPEG fails the batched call: decode them one by one
            pass
        single: list[torch.Tensor | None] = []
        for item in data:
            try:
                single.append(decode_jpeg(item, mode=ImageReadMode.RGB, device=self.device))
            except RuntimeError:
                single.append(None)
        return single

    def _on_cpu(self, data: bytes, errors: list[str | None], index: int) -> torch.Tensor | None:
        try:
            image = decode_image(data, target_side=self.preprocess.decode_side)
        except ImageError as exc:
            errors[index] = exc.reason
            return None
        levels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        levels = levels.view(image.height, image.width, 3).permute(2, 0, 1)
        return levels.to(self.device, non_blocking=True)

    def pixels(self, images: Sequence[torch.Tensor], rows: int) -> torch.Tensor:
        """(rows, 3, side, side) in the model's dtype; rows past ``len(images)`` are zeros."""
        side = self.preprocess.image_size
        out = torch.zeros((rows, 3, side, side), device=self.device, dtype=torch.float32)
        for index, levels in enumerate(images):
            out[index] = crop_on_device(levels, self.preprocess)
        out[: len(images)].mul_(self._scale).add_(self._shift)
        return out.to(self.dtype)

    @torch.inference_mode()
    def scores(self, batch: Sequence[bytes], captions: Sequence[str]) -> list[float | None]:
        """Calibrated p_ai per item, None for an item refused (bad bytes)."""
        decoded = self.decode(batch)
        kept = [i for i, image in enumerate(decoded.images) if image is not None]
        p_ai: list[float | None] = [None] * len(batch)
        step = BUCKETS[-1]
        for start in range(0, len(kept), step):
            part = kept[start : start + step]
            images = [decoded.images[i] for i in part]
            rows = bucket(len(part))
            features = self.encode_image(self.pixels([i for i in images if i is not None], rows))
            text = self.captions.features([captions[i] for i in part], self._encode_text)
            logits_a, _ = self.model.fused_logits(text.to(self.dtype), features[: len(part)])
            probs = torch.sigmoid(logits_a.float() / self.config.temperature).cpu().tolist()
            for index, value in zip(part, probs, strict=True):
                p_ai[index] = value
        return p_ai

    def _encode_text(self, captions: list[str]) -> torch.Tensor:
        encoded = self.tokenize(captions)
        ids, mask = (encoded[k].to(self.device) for k in ("input_ids", "attention_mask"))
        return self.model.encode_text(ids, mask)


def crop_on_device(levels: torch.Tensor, preprocess: PreprocessConfig) -> torch.Tensor:
    """One (3, H, W) uint8 image to its (3, side, side) float centre square, resized as
    :class:`serving.model.pixels.PixelPipeline` resizes it (bicubic, antialiased)."""
    side = preprocess.image_size
    height, width = int(levels.shape[1]), int(levels.shape[2])
    new_width, new_height = resized_size(width, height, side)
    image = levels.unsqueeze(0).float()
    if (new_width, new_height) != (width, height):
        image = (
            F.interpolate(image, size=(new_height, new_width), mode="bicubic", antialias=True)
            .clamp_(0, 255)
            .round_()
        )  # the 8-bit levels the CPU pipeline resizes to
    top, left = (new_height - side) // 2, (new_width - side) // 2
    return image[0, :, top : top + side, left : left + side]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _arguments(argv)
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    precision = args.precision or ("bf16" if cuda else "fp32")
    compile_mode = args.compile or ("reduce-overhead" if cuda else "none")
    if not cuda:
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    started = time.monotonic()
    from serving.model.presets import build_preset

    preset = "tiny" if args.tiny else "base-random"
    path = DevicePath(build_preset(preset, "fused"), device, precision, compile_mode)
    built_s = time.monotonic() - started
    corpus, captions = _corpus()
    batch = min(args.batch, BUCKETS[-1])
    items = [corpus[i % len(corpus)] for i in range(batch)]
    texts = [captions[i % len(captions)] for i in range(batch)]
    print(
        f"# {preset} fused on {_device_name(device)}, {precision}, compile {compile_mode}, "
        f"batch {batch}; model built in {built_s:.0f} s",
        flush=True,
    )
    started = time.monotonic()
    for size in sorted({bucket(batch), bucket(max(1, batch // 4))}):  # warm-up: these shapes
        path.scores(items[:size], texts[:size])
    warm_s = time.monotonic() - started
    rounds = 2 if args.quick else args.rounds
    timings = {"decode": 0.0, "total": 0.0}
    refused = 0
    for _ in range(rounds):
        _sync(device)
        begun = time.perf_counter()
        decoded = path.decode(items)
        _sync(device)
        timings["decode"] += time.perf_counter() - begun
        begun = time.perf_counter()
        p_ai = path.scores(items, texts)
        _sync(device)
        timings["total"] += time.perf_counter() - begun
        refused += sum(p is None for p in p_ai)
    items_per_s = rounds * batch / timings["total"]
    result = {
        "device": _device_name(device),
        "preset": preset,
        "precision": precision,
        "compile": compile_mode,
        "batch": batch,
        "rounds": rounds,
        "warm_up_s": warm_s,
        "items_per_s": items_per_s,
        "decode_items_per_s": rounds * batch / timings["decode"],
        "decoded_on_device": decoded.on_device,
        "refused": refused,
        "goal_items_per_s": GOAL_ITEMS_PER_S,
    }
    verdict = "met" if items_per_s >= GOAL_ITEMS_PER_S else "not met"
    print(
        f"JPEG bytes to scores: {items_per_s:.0f} items/s "
        f"(goal {GOAL_ITEMS_PER_S:.0f}: {verdict}); "
        f"decode alone {result['decode_items_per_s']:.0f} items/s, "
        f"{decoded.on_device} of {batch} decoded on the device; warm-up {warm_s:.0f} s",
        flush=True,
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def _corpus() -> tuple[list[bytes], list[str]]:
    """Photo-like JPEGs of a few sizes with captions, and a few PNGs (the CPU fallback's share).

    Made here rather than read from the smoke set, so that the GPU machine needs no data set.
    """
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = [(256, 256), (640, 480), (480, 640), (1024, 768)]
    images, captions = [], []
    for index in range(64):
        width, height = sizes[index % len(sizes)]
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        blown = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
        field = np.asarray(blown)
        grain = rng.integers(-10, 11, field.shape)
        picture = Image.fromarray(np.clip(field + grain, 0, 255).astype(np.uint8))
        fmt = "PNG" if index % 32 == 31 else "JPEG"
        with io.BytesIO() as buffer:
            picture.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
            images.append(buffer.getvalue())
        captions.append("" if index % 3 == 0 else f"a photo, caption {index % 8}")
    return images, captions


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--device", default="auto", help="auto (cuda when usable), cuda or cpu")
    parser.add_argument(
        "--precision", choices=("fp32", "fp16", "bf16"), help="default bf16 on cuda"
    )
    parser.add_argument(
        "--compile",
        choices=("none", "default", "reduce-overhead", "max-autotune"),
        help="torch.compile mode of the image encoder (default reduce-overhead on cuda)",
    )
    parser.add_argument("--batch", type=int, default=256, help="items per pass (default 256)")
    parser.add_argument("--rounds", type=int, default=20, help="timed passes (default 20)")
    parser.add_argument("--quick", action="store_true", help="2 timed passes")
    parser.add_argument("--tiny", action="store_true", help="the tiny preset instead of base")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()

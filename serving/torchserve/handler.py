"""TorchServe handler of the detector: every architecture, one answer format.

TorchServe imports the archive's entry module, which re-exports :func:`handle`. It calls
``handle(None, context)`` once, when the model loads (the worker is not READY until that returns),
then ``handle(requests, context)`` for each server batch: up to ``batchSize`` HTTP requests, each
carrying one item (a JSON object) or a list of items (a micro-batch from the worker). An item is
``{"image_b64": "...", "caption": "..."}``, the caption optional.

A batch goes through four separate steps:

1. decode: each request body into items (:mod:`serving.torchserve.items`), each item into its
   image bytes and caption, or an error;
2. batch: the valid items of every request, flattened and cut into forward passes of at most
   ``max_forward_batch`` items whose decoded images stay within ``max_batch_decoded_mb``. An
   image is decoded, reduced to about twice the model's input side and cropped to the model's
   input (:mod:`serving.torchserve.decoding`, on the worker's cores, a few items ahead) only when
   its pass is being formed, and released once the pass has run: a server batch holds one pass of
   images at a time, and those few;
3. predict: the model on each pass; a pass that fails (out of memory included) is re-run item by
   item, so one poisonous item cannot fail its neighbours;
4. encode: one JSON answer per request, one entry per item in request order: a result, or
   ``{"error": {"reason", "detail"}}``. A single-object request gets a single object back.

A request that is not JSON or not item-shaped is answered 400 (413 when it has too many items)
and the rest of the batch is served. An item whose own decode or forward pass fails for a reason
other than its bytes (an exception, MemoryError included) is answered ``unscorable_image``, once
the model has run on a small reference item; when even that fails, the server and not the item is
at fault and the whole batch fails (TorchServe answers 507 when out of memory, 503 otherwise) for
the client to retry.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from schemas.limits import MAX_IMAGE_ASPECT_RATIO, MAX_IMAGE_PIXELS
from serving.client import wire
from serving.imageio import MAX_IMAGE_BYTES
from serving.torchserve.decoding import ImageReader
from serving.torchserve.items import Item, Request, read_request

if TYPE_CHECKING:
    from ts.context import Context

    from serving.model.predictor import Predictor

__all__ = ["DetectorHandler", "HandlerSettings", "handle"]

log = logging.getLogger(__name__)

_JSON: Final[str] = "application/json"


@dataclass(frozen=True)
class HandlerSettings:
    """The ``handler`` section of an archive's model-config.yaml (written by
    serving.torchserve.archive)."""

    checkpoint: str = "checkpoint"
    precision: str = "auto"
    backend: str = "torch"
    """What runs the encoders (serving.model.backends); exported ones are under ``encoders/``."""
    compile: bool = False
    """torch backend: encoders through ``torch.compile``."""
    max_forward_batch: int = 32
    max_items_per_request: int = 256
    threads: int = 0
    """Torch threads; 0: this machine's cores divided by the model's maxWorkers."""
    max_image_bytes: int = MAX_IMAGE_BYTES
    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_image_aspect_ratio: float = MAX_IMAGE_ASPECT_RATIO
    max_batch_decoded_mb: int = 256
    """Decoded images held at once (crops of the model's input once prepared): a forward pass
    closes early rather than pass it. Decoding briefly needs a few bytes per pixel of the images'
    full size on top, images decoding at once summing to at most ``max_image_pixels``; 256
    leaves the base model room on a 2 GiB server."""
    device_decoded_mb: int = 1024
    """On a GPU: full-size RGB of the JPEGs its decoder decodes in one call, by their headers
    (serving.torchserve.device_decoding); a group closes early rather than pass it."""
    architecture: str = ""
    aigis_version: str = "unknown"
    watermark: bool = False
    """Read the SDXL invisible watermark of each image (a second, full-size decode)."""
    watermark_max_pixels: int = 2048 * 2048
    """Larger images are not read for the watermark (its decoder's time grows with the pixels)."""

    @classmethod
    def from_yaml(cls, section: dict[str, Any] | None) -> HandlerSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (section or {}).items() if k in known})


class DetectorHandler:
    """Loads one checkpoint per TorchServe worker and answers server batches."""

    def __init__(self) -> None:
        self.predictor: Predictor | None = None
        self.reader: ImageReader | None = None
        self.settings = HandlerSettings()
        self.served_name = ""
        self.served_version = ""

    def initialize(self, context: Context) -> None:
        """Load the archive's checkpoint on the worker's device; warm it up."""
        import torch

        from serving.model.backend_choice import ENCODERS_DIR
        from serving.model.backends import set_threads
        from serving.model.predictor import Predictor
        from serving.torchserve.archive import aigis_version

        yaml_config = context.model_yaml_config or {}
        self.settings = HandlerSettings.from_yaml(yaml_config.get("handler"))
        model = context.manifest["model"]
        self.served_name = str(model["modelName"])
        self.served_version = str(model.get("modelVersion", "1.0"))
        properties = context.system_properties
        gpu_id = properties.get("gpu_id")
        device = f"cuda:{gpu_id}" if gpu_id is not None and torch.cuda.is_available() else "cpu"
        if device == "cpu":
            set_threads(self.settings.threads, int(yaml_config.get("maxWorkers", 1)))
        installed = aigis_version()
        if installed != self.settings.aigis_version:
            log.warning(
                "archive built by aigis %s, served by aigis %s; re-export it if answers look wrong",
                self.settings.aigis_version,
                installed,
            )
        started = time.monotonic()
        model_dir = Path(properties["model_dir"])
        self.predictor = Predictor.from_checkpoint(
            model_dir / self.settings.checkpoint,
            device=device,
            precision=self.settings.precision,
            max_batch=self.settings.max_forward_batch,
            backend=self.settings.backend,
            encoders=model_dir / ENCODERS_DIR,
            compile=self.settings.compile,
        )
        self.reader = image_reader(self.predictor, torch.get_num_threads())
        self._run_reference()
        log.info(
            "model %s version %s (%s) ready on %s, %s %s, %d threads, in %.1f s",
            self.served_name,
            self.served_version,
            self.predictor.architecture,
            device,
            self.predictor.backend,
            self.predictor.precision,
            torch.get_num_threads(),
            time.monotonic() - started,
        )

    def handle(self, data: list[dict[str, Any]], context: Context) -> list[str]:
        """One JSON answer per request of the server batch, in order."""
        # The management API's describe call; alone, so a client's header cannot answer a batch.
        if len(data) == 1 and context.get_request_header(0, "describe") == "True":
            return [json.dumps(self.describe())]
        started = time.monotonic()
        headers = [context.get_all_request_header(i) or {} for i in range(len(data))]
        requests = [self.decode(row, h) for row, h in zip(data, headers, strict=True)]
        items = [item for request in requests if request.refused is None for item in request.items]
        for chunk in self.batch(items):
            self.predict(chunk)
        answers = [self.encode(request, len(data)) for request in requests]
        for index, (request, (status, _)) in enumerate(zip(requests, answers, strict=True)):
            context.set_response_content_type(index, _JSON)
            if status != 200:
                reason = request.refused.reason if request.refused else "bad_item"
                context.set_response_status(status, reason, index)
        errors = Counter(item.error["reason"] for item in items if item.error is not None)
        _record_metrics(context, scored=len(items) - errors.total(), errors=errors)
        log.info(
            "served %d requests, %d items (%d errors) in %.0f ms",
            len(data),
            len(items),
            errors.total(),
            (time.monotonic() - started) * 1000,
        )
        return [body for _, body in answers]

    def describe(self) -> dict[str, Any]:
        """``customizedMetadata`` of the management API; the answer to ``{"describe": true}``."""
        predictor = self._loaded()
        return {
            "name": self.served_name,
            "version": self.served_version,
            "architecture": predictor.architecture,
            "generators": list(predictor.generators),
            "reads_caption": predictor.reads_caption,
            "checkpoint": {"name": predictor.name, "version": predictor.version},
            "device": str(predictor.device),
            "backend": predictor.backend,
            "precision": predictor.precision,
            "dtype": str(predictor.dtype).removeprefix("torch."),
            "max_forward_batch": self.settings.max_forward_batch,
            "aigis_version": self.settings.aigis_version,
        }

    # -- the four steps ----------------------------------------------------------------------

    def decode(self, row: dict[str, Any], headers: dict[str, str]) -> Request:
        """Parse one request of the batch into items; refuse it whole if it is not item-shaped."""
        return read_request(
            row,
            max_items=self.settings.max_items_per_request,
            max_image_bytes=self.settings.max_image_bytes,
            headers=headers,
        )

    def batch(self, items: Sequence[Item]) -> Iterator[list[Item]]:
        """The items still to predict, decoded one forward pass at a time.

        A pass holds at most ``max_forward_batch`` items and at most ``max_batch_decoded_mb`` of
        decoded images (or one image, however large); its images are released once the caller
        has run it. Images decode on the worker's cores a few items ahead
        (:class:`~serving.torchserve.decoding.ImageReader`).
        """
        budget = self.settings.max_batch_decoded_mb * 2**20
        chunk: list[Item] = []
        held = 0
        reader = self._loaded_reader()
        for decoded in reader.ahead((i for i in items if i.error is None), self.settings):
            item, image = decoded.item, decoded.image
            if decoded.failure:
                self._unscorable(item, "decode", decoded.failure)
            if image is None:
                continue
            cost = decoded.held
            if chunk and (len(chunk) == self.settings.max_forward_batch or held + cost > budget):
                yield from _run_then_release(chunk)
                chunk, held = [], 0
            item.image = image
            chunk.append(item)
            held += cost
        if chunk:
            yield from _run_then_release(chunk)

    def predict(self, chunk: list[Item]) -> None:
        """Fill each item's result; a pass that fails is re-run item by item."""
        try:
            predictions = self._loaded().predict(
                [item.image for item in chunk if item.image is not None],
                [item.caption for item in chunk],
            )
        except Exception:  # MemoryError included: each item alone may still fit
            log.exception("forward pass of %d items failed; retrying them one by one", len(chunk))
            predictions = None
        if predictions is None:
            # Outside the except block, whose traceback would keep the failed pass's tensors.
            for item in chunk:
                self._predict_alone(item)
            return
        for item, prediction in zip(chunk, predictions, strict=True):
            item.result = prediction

    def encode(self, request: Request, server_batch_size: int) -> tuple[int, str]:
        """HTTP status and JSON body of one request's answer."""
        if request.describe:
            return 200, wire.dumps(self.describe())
        if request.refused is not None:
            refused = request.refused
            return refused.status, wire.dumps(wire.error_json(refused.reason, refused.detail))
        entries: list[dict[str, Any]] = []
        for item in request.items:
            if item.error is not None or item.result is None:
                entries.append({"error": item.error})
            else:
                entries.append(
                    wire.result_json(
                        item.result,
                        model_name=self.served_name,
                        model_version=self.served_version,
                        server_batch_size=server_batch_size,
                        signals=item.signals,
                    )
                )
        if request.single:
            # A lone bad item is the whole request: say so in the status too.
            return (422 if "error" in entries[0] else 200), wire.dumps(entries[0])
        return 200, wire.dumps(entries)

    # -- helpers -----------------------------------------------------------------------------

    def _predict_alone(self, item: Item) -> None:
        failure = ""
        try:
            [item.result] = self._loaded().predict([item.image], [item.caption])  # type: ignore[list-item]
        except Exception as exc:  # MemoryError included
            log.exception("forward pass of one item failed")
            failure = type(exc).__name__
        if failure:
            self._unscorable(item, "score", failure)

    def _unscorable(self, item: Item, step: str, failure: str) -> None:
        """Fail ``item`` alone, once the model has run on the reference item.

        When the reference fails too, the server rather than the item is at fault: its exception
        fails the whole batch, which the client retries later.
        """
        self._run_reference()
        item.fail(
            "unscorable_image",
            f"the model server could not {step} this image ({failure}) while it scores others; "
            "the failure is in the server log (re-encoding the image as a plain JPEG may help)",
        )

    def _run_reference(self) -> None:
        # One small pass: at start it pays for lazy set-up (kernels, allocator) so that no
        # request does; after an item failed it tells a bad item from a broken server.
        from PIL import Image

        grey = Image.new("RGB", (64, 64), (128, 128, 128))
        self._loaded().predict([grey], ["warm-up"])

    def _loaded(self) -> Predictor:
        if self.predictor is None:
            raise RuntimeError("the detector handler is used before initialize() loaded the model")
        return self.predictor

    def _loaded_reader(self) -> ImageReader:
        if self.reader is None:
            raise RuntimeError("the detector handler is used before initialize() loaded the model")
        return self.reader


def image_reader(predictor: Predictor, threads: int) -> ImageReader:
    """The reader of ``predictor``'s images: on a GPU JPEGs are decoded and cropped there
    (:mod:`serving.torchserve.device_decoding`), when torchvision's decoder works there and the
    checkpoint crops with the project's pixel pipeline (not a processor of its own)."""
    from serving.torchserve.device_decoding import DeviceImageReader, device_decoder_works

    preprocess = predictor.config.preprocess
    if predictor.device.type == "cuda" and predictor.crops:
        why_not = device_decoder_works(predictor.device)
        if not why_not:
            return DeviceImageReader(preprocess, threads, predictor.prepare, predictor.device)
        log.warning("images are decoded on the CPU, not on %s: %s", predictor.device, why_not)
    return ImageReader(preprocess.decode_side, threads, predictor.prepare)


def _record_metrics(context: Context, *, scored: int, errors: Counter[str]) -> None:
    """Count scored and refused items in TorchServe's metrics (Prometheus at /metrics)."""
    metrics = context.metrics
    if metrics is None:
        return
    from ts.metrics.dimension import Dimension

    # Metrics must never cost an answer: TorchServe reports them on a best-effort basis too.
    try:
        metrics.add_counter("ItemsScored", scored)
        for reason, count in errors.items():
            metrics.add_counter("ItemErrors", count, dimensions=[Dimension("Reason", reason)])
    except Exception:
        log.warning("could not record item metrics", exc_info=True)


def _run_then_release(chunk: list[Item]) -> Iterator[list[Item]]:
    """Hand ``chunk`` out for its forward pass, then drop its images."""
    yield chunk
    for item in chunk:
        item.image = None


class _Service:
    """The one handler of this worker process (TorchServe's function entry point has no object)."""

    handler: DetectorHandler | None = None


def handle(data: list[dict[str, Any]] | None, context: Context) -> list[str] | None:
    """TorchServe's entry point: ``data`` None initialises, otherwise one server batch."""
    if data is None:
        handler = DetectorHandler()
        handler.initialize(context)
        _Service.handler = handler
        return None
    if _Service.handler is None:
        raise RuntimeError("TorchServe called the handler before initialising it")
    return _Service.handler.handle(data, context)

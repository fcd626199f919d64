"""TorchServe handler of the detector: every architecture, one answer format.

TorchServe imports the archive's entry module, which re-exports :func:`handle`. It calls
``handle(None, context)`` once, when the model loads (the worker is not READY until that returns),
then ``handle(requests, context)`` for each server batch: up to ``batchSize`` HTTP requests, each
carrying one item (a JSON object) or a list of items (a micro-batch from the worker). An item is
``{"image_b64": "...", "caption": "..."}``, the caption optional.

A batch goes through four separate steps:

1. decode: each request body into items, each item into an RGB image and a caption, or an error;
2. batch: the valid items of every request, flattened and cut into forward passes of at most
   ``max_forward_batch``;
3. predict: the model on each pass; a pass that fails is re-run item by item, so one poisonous
   item cannot fail its neighbours;
4. encode: one JSON answer per request, one entry per item in request order: a result, or
   ``{"error": {"reason", "detail"}}``. A single-object request gets a single object back.

A request that is not JSON or not item-shaped is answered 400 (413 when it has too many items)
and the rest of the batch is served.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from schemas.limits import MAX_IMAGE_PIXELS
from serving.client import wire
from serving.errors import ImageError
from serving.imageio import MAX_IMAGE_BYTES, decode_image

if TYPE_CHECKING:
    from PIL import Image
    from ts.context import Context

    from serving.client.prediction import Prediction
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
    max_forward_batch: int = 32
    max_items_per_request: int = 256
    threads: int = 0
    """Torch threads; 0: this machine's cores divided by the model's maxWorkers."""
    max_image_bytes: int = MAX_IMAGE_BYTES
    max_image_pixels: int = MAX_IMAGE_PIXELS
    architecture: str = ""
    aigis_version: str = "unknown"

    @classmethod
    def from_yaml(cls, section: dict[str, Any] | None) -> HandlerSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (section or {}).items() if k in known})


class _Refused(Exception):  # noqa: N818 (flow control inside this module, never escapes)
    """A whole request is refused with ``status``."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        self.status = status
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


@dataclass
class _Item:
    caption: str | None = None
    image: Image.Image | None = None
    error: dict[str, str] | None = None
    result: Prediction | None = None


@dataclass
class _Request:
    items: list[_Item] = field(default_factory=list)
    single: bool = False
    """The body was one object, not a list: answer with one object."""
    refused: _Refused | None = None


class DetectorHandler:
    """Loads one checkpoint per TorchServe worker and answers server batches."""

    def __init__(self) -> None:
        self.predictor: Predictor | None = None
        self.settings = HandlerSettings()
        self.served_name = ""
        self.served_version = ""

    def initialize(self, context: Context) -> None:
        """Load the archive's checkpoint on the worker's device; warm it up."""
        import torch

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
            _set_threads(self.settings.threads, int(yaml_config.get("maxWorkers", 1)))
        installed = aigis_version()
        if installed != self.settings.aigis_version:
            log.warning(
                "archive built by aigis %s, served by aigis %s; re-export it if answers look wrong",
                self.settings.aigis_version,
                installed,
            )
        started = time.monotonic()
        self.predictor = Predictor.from_checkpoint(
            Path(properties["model_dir"]) / self.settings.checkpoint,
            device=device,
            precision=self.settings.precision,
            max_batch=self.settings.max_forward_batch,
        )
        self._warm_up()
        log.info(
            "model %s version %s (%s) ready on %s, %s, %d torch threads, in %.1f s",
            self.served_name,
            self.served_version,
            self.predictor.architecture,
            device,
            self.settings.precision,
            torch.get_num_threads(),
            time.monotonic() - started,
        )

    def handle(self, data: list[dict[str, Any]], context: Context) -> list[str]:
        """One JSON answer per request of the server batch, in order."""
        if context.get_request_header(0, "describe") == "True":
            return [json.dumps(self.describe())]
        started = time.monotonic()
        requests = [self.decode(row) for row in data]
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
        """What ``GET /models/<name>?customized=true`` shows as ``customizedMetadata``."""
        predictor = self._loaded()
        return {
            "name": self.served_name,
            "version": self.served_version,
            "architecture": predictor.architecture,
            "generators": list(predictor.generators),
            "reads_caption": predictor.reads_caption,
            "checkpoint": {"name": predictor.name, "version": predictor.version},
            "device": str(predictor.device),
            "precision": self.settings.precision,
            "dtype": str(predictor.dtype).removeprefix("torch."),
            "max_forward_batch": self.settings.max_forward_batch,
            "aigis_version": self.settings.aigis_version,
        }

    # -- the four steps ----------------------------------------------------------------------

    def decode(self, row: dict[str, Any]) -> _Request:
        """Parse one request of the batch into items; refuse it whole if it is not item-shaped."""
        try:
            body = _body(row)
            single = isinstance(body, dict)
            raw_items = [body] if single else body
            if not isinstance(raw_items, list):
                raise _Refused(
                    400,
                    "not_items",
                    f"the body is JSON {type(body).__name__}; send an item object "
                    '{"image_b64": ..., "caption": ...} or a list of them',
                )
            if not raw_items:
                raise _Refused(400, "no_items", "the list of items is empty; send at least one")
            if len(raw_items) > self.settings.max_items_per_request:
                raise _Refused(
                    413,
                    "too_many_items",
                    f"{len(raw_items)} items in one request, over the limit of "
                    f"{self.settings.max_items_per_request}; split the list",
                )
            for position, raw in enumerate(raw_items):
                if not isinstance(raw, dict):
                    raise _Refused(
                        400,
                        "not_items",
                        f"item {position} is JSON {type(raw).__name__}, not an object",
                    )
        except _Refused as refused:
            return _Request(refused=refused)
        return _Request(items=[self._decode_item(raw) for raw in raw_items], single=single)

    def batch(self, items: Sequence[_Item]) -> Iterator[list[_Item]]:
        """The items still to predict, in forward passes of at most ``max_forward_batch``."""
        pending = [item for item in items if item.error is None]
        size = self.settings.max_forward_batch
        for start in range(0, len(pending), size):
            yield pending[start : start + size]

    def predict(self, chunk: list[_Item]) -> None:
        """Fill each item's result; an item whose forward pass fails gets an error instead."""
        predictor = self._loaded()
        try:
            predictions = predictor.predict(
                [item.image for item in chunk if item.image is not None],
                [item.caption for item in chunk],
            )
        except MemoryError:
            raise  # TorchServe answers 507 and the client retries later
        except Exception:
            log.exception("forward pass of %d items failed; retrying them one by one", len(chunk))
            self._predict_one_by_one(chunk)
            return
        for item, prediction in zip(chunk, predictions, strict=True):
            item.result = prediction

    def encode(self, request: _Request, server_batch_size: int) -> tuple[int, str]:
        """HTTP status and JSON body of one request's answer."""
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
                    )
                )
        if request.single:
            # A lone bad item is the whole request: say so in the status too.
            return (422 if "error" in entries[0] else 200), wire.dumps(entries[0])
        return 200, wire.dumps(entries)

    # -- helpers -----------------------------------------------------------------------------

    def _decode_item(self, raw: dict[str, Any]) -> _Item:
        try:
            data, caption = wire.read_item(raw, max_image_bytes=self.settings.max_image_bytes)
            image = decode_image(
                data,
                max_bytes=self.settings.max_image_bytes,
                max_pixels=self.settings.max_image_pixels,
            )
        except (wire.WireError, ImageError) as exc:
            return _failed(exc.reason, exc.detail)
        return _Item(caption=caption, image=image)

    def _predict_one_by_one(self, chunk: list[_Item]) -> None:
        predictor = self._loaded()
        for item in chunk:
            try:
                [prediction] = predictor.predict([item.image], [item.caption])  # type: ignore[list-item]
            except MemoryError:
                raise
            except Exception as exc:
                log.exception("forward pass of one item failed")
                item.error = {
                    "reason": "prediction_failed",
                    "detail": f"the model failed on this item ({type(exc).__name__}); "
                    "it was reported to the server log",
                }
            else:
                item.result = prediction

    def _warm_up(self) -> None:
        # The first forward pass pays for lazy set-up (kernels, allocator); no request should.
        from PIL import Image

        grey = Image.new("RGB", (64, 64), (128, 128, 128))
        self._loaded().predict([grey], ["warm-up"])

    def _loaded(self) -> Predictor:
        if self.predictor is None:
            raise RuntimeError("the detector handler is used before initialize() loaded the model")
        return self.predictor


def _body(row: dict[str, Any]) -> Any:
    body = row.get("body")
    if body is None:
        body = row.get("data")
    # TorchServe parses application/json bodies itself; anything else arrives as bytes or text.
    if isinstance(body, bytes | bytearray | str):
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _Refused(
                400,
                "not_json",
                f"the request body is not UTF-8 JSON ({exc}); send a JSON "
                "object or list with Content-Type: application/json",
            ) from None
    if body is None:
        raise _Refused(
            400,
            "not_json",
            "the request has no JSON body; send a JSON object or list with "
            "Content-Type: application/json",
        )
    return body


def _set_threads(threads: int, workers: int) -> None:
    """Torch threads of this worker so that all workers together use each core once."""
    import torch

    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads or max(1, cores // max(1, workers)))
    # One forward pass at a time per worker; fixed already if torch ran something in parallel.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


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


def _failed(reason: str, detail: str) -> _Item:
    return _Item(error={"reason": reason, "detail": detail})


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

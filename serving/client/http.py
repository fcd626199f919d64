"""The client of TorchServe's inference API: the only way the worker reaches the model.

The worker never needs the management API (production denies it that port): the model describes
itself on the inference port too, answering a ``{"describe": true}`` request
(:data:`serving.client.wire.DESCRIBE_REQUEST`). Torch-free, so worker hosts run without torch.

Errors are those of :mod:`serving.client.transport` (``ServingUnavailable``: send the items
again later; ``ServingRequestError``: the request was refused); an
:class:`~serving.client.wire.ItemError` in a result list means that one item cannot be scored
and the others were.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import structlog

from schemas.errors import AigisError
from schemas.settings import ServingSettings
from serving.client.transport import (
    ServingUnavailable,
    Transport,
    TransportOwner,
    raise_for_status,
)
from serving.client.wire import (
    COMPACT_CONTENT_TYPE,
    DESCRIBE_REQUEST,
    ItemError,
    ItemResult,
    compact_body,
    dumps,
    item_json,
    read_answer,
)

__all__ = ["ModelInfo", "ServingClient"]

log = structlog.get_logger(__name__)

PREDICT_RETRY_STATUSES: Final[frozenset[int]] = frozenset({404, 408, 429, 500, 502, 503, 504, 507})
"""Statuses after which the same prediction may succeed later. 404: the model is not registered
(yet, or during a version switch); 507: TorchServe ran out of memory for this batch."""

_MIB: Final[int] = 1024 * 1024
_ITEM_OVERHEAD: Final[int] = 64
"""JSON punctuation and keys around one item's base64 and caption, in bytes (generous)."""


@dataclass(frozen=True)
class ModelInfo:
    """What a served version of the model is (the default one unless a version was asked)."""

    name: str
    version: str
    architecture: str
    generators: tuple[str, ...]
    reads_caption: bool


class ServingClient(TransportOwner):
    """Scores images on TorchServe's ``/predictions/<model_name>`` (the default version), or
    ``/predictions/<model_name>/<version>`` when a version is given.

    Thread-safe; a context manager. Pass ``key_file=settings.serving_key_file`` when TorchServe
    runs with token authorisation and no token is set in the settings.
    """

    def __init__(self, settings: ServingSettings, *, key_file: Path | None = None) -> None:
        self._settings = settings
        self._transport = Transport(settings, key_file=key_file)
        self._path = f"predictions/{settings.model_name}"
        self._max_request_bytes = settings.max_request_mb * _MIB

    def predict(
        self, items: Sequence[tuple[bytes, str | None]], *, version: str | None = None
    ) -> list[ItemResult | ItemError]:
        """Score ``(image bytes, caption)`` items; one answer per item, in order.

        Sent as one request unless that would exceed ``settings.max_request_mb``.
        """
        return self.predict_many(
            items, request_items=max(1, len(items)), max_in_flight=1, version=version
        )

    def predict_many(
        self,
        items: Sequence[tuple[bytes, str | None]],
        *,
        request_items: int,
        max_in_flight: int,
        version: str | None = None,
    ) -> list[ItemResult | ItemError]:
        """Score items in requests of at most ``request_items``, ``max_in_flight`` at a time,
        with ``version`` of the model (None: the default one).

        One answer per item, in order. An item too large for any request is an ItemError
        (``image_too_large``) and is not sent. Raises ServingUnavailable or ServingRequestError
        when any request fails; the requests not yet started are then not sent.
        """
        if request_items < 1 or max_in_flight < 1:
            raise ValueError("request_items and max_in_flight must be at least 1")
        results: list[ItemResult | ItemError | None] = [None] * len(items)
        chunks: list[list[int]] = []
        for index, error in self._split(items, request_items, chunks):
            results[index] = error
        path = self._versioned(version)
        if len(chunks) <= 1 or max_in_flight == 1:
            for chunk in chunks:
                self._fill(results, chunk, self._request(items, chunk, path))
        else:
            self._run_concurrently(items, chunks, results, max_in_flight, path)
        return [result for result in results if result is not None]

    def model_info(self, version: str | None = None) -> ModelInfo:
        """Name, version, architecture and labels of ``version`` (None: the default one), as
        the handler describes itself on the inference port."""
        response = self._transport.send(
            "POST",
            "inference",
            self._versioned(version),
            content=DESCRIBE_REQUEST,
            retry_statuses=PREDICT_RETRY_STATUSES,
        )
        raise_for_status(response)
        try:
            meta = response.json()
            return ModelInfo(
                name=str(meta["name"]),
                version=str(meta["version"]),
                architecture=str(meta["architecture"]),
                generators=tuple(str(name) for name in meta["generators"]),
                reads_caption=bool(meta["reads_caption"]),
            )
        except (ValueError, LookupError, TypeError) as exc:
            raise ServingUnavailable(
                f"the model {self._settings.model_name!r} on TorchServe does not describe itself "
                f"as an aigis detector ({type(exc).__name__}: {exc}); serve an archive made by "
                "`aigis export`",
                retry_after=self._settings.backoff_max_s,
            ) from None

    def ready(self) -> bool:
        """True when TorchServe answers and a worker of the model's default version is READY
        (it described itself: only a loaded worker can)."""
        try:
            ping = self._transport.send(
                "GET", "inference", "ping", retry_statuses=frozenset(), retries=0
            )
            if ping.status_code != httpx.codes.OK:
                return False
            described = self._transport.send(
                "POST",
                "inference",
                self._path,
                content=DESCRIBE_REQUEST,
                retry_statuses=frozenset(),
                retries=0,
            )
            return described.status_code == httpx.codes.OK and "version" in described.json()
        except (AigisError, ValueError, LookupError, TypeError, AttributeError):
            return False

    def _versioned(self, version: str | None) -> str:
        return self._path if version is None else f"{self._path}/{version}"

    def _split(
        self,
        items: Sequence[tuple[bytes, str | None]],
        request_items: int,
        chunks: list[list[int]],
    ) -> Iterator[tuple[int, ItemError]]:
        """Group item indices into ``chunks`` within both limits; yield the items fitting none."""
        budget = self._max_request_bytes - 2  # the list's brackets
        chunk: list[int] = []
        used = 0
        for index, (image, caption) in enumerate(items):
            size = _encoded_size(image, caption)
            if size > budget:
                yield (
                    index,
                    ItemError(
                        "image_too_large",
                        f"the image is {len(image)} bytes; a request to TorchServe carries at most "
                        f"{self._settings.max_request_mb} MiB (serving.max_request_mb) once base64 "
                        "encoded; send a smaller image",
                    ),
                )
                continue
            if chunk and (len(chunk) >= request_items or used + size > budget):
                chunks.append(chunk)
                chunk, used = [], 0
            chunk.append(index)
            used += size
        if chunk:
            chunks.append(chunk)

    def _request(
        self, items: Sequence[tuple[bytes, str | None]], chunk: list[int], path: str
    ) -> list[ItemResult | ItemError]:
        chosen = [items[index] for index in chunk]
        if self._settings.request_body == "compact":
            body, content_type = compact_body(chosen), COMPACT_CONTENT_TYPE
        else:
            body = dumps([item_json(*item) for item in chosen]).encode("utf-8")
            content_type = "application/json"
        response = self._transport.send(
            "POST",
            "inference",
            path,
            content=body,
            content_type=content_type,
            retry_statuses=PREDICT_RETRY_STATUSES,
        )
        raise_for_status(response)
        return _parse_results(response, len(chunk), self._settings.backoff_max_s)

    def _run_concurrently(
        self,
        items: Sequence[tuple[bytes, str | None]],
        chunks: list[list[int]],
        results: list[ItemResult | ItemError | None],
        max_in_flight: int,
        path: str,
    ) -> None:
        with ThreadPoolExecutor(
            max_workers=min(max_in_flight, len(chunks)), thread_name_prefix="aigis-serving"
        ) as pool:
            futures: dict[Future[list[ItemResult | ItemError]], list[int]] = {
                pool.submit(self._request, items, chunk, path): chunk for chunk in chunks
            }
            _, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            for future in futures:
                if future.cancelled():
                    continue
                error = future.exception()  # waits for requests already in flight
                if error is not None:
                    raise error
                self._fill(results, futures[future], future.result())

    @staticmethod
    def _fill(
        results: list[ItemResult | ItemError | None],
        chunk: list[int],
        answers: list[ItemResult | ItemError],
    ) -> None:
        for index, answer in zip(chunk, answers, strict=True):
            results[index] = answer


def _encoded_size(image: bytes, caption: str | None) -> int:
    base64_size = 4 * ((len(image) + 2) // 3)
    # A caption may grow up to 6x when JSON escapes it (\\uXXXX); counting that is cheap insurance.
    return base64_size + (6 * len(caption) if caption else 0) + _ITEM_OVERHEAD


def _parse_results(
    response: httpx.Response, expected: int, retry_after: float
) -> list[ItemResult | ItemError]:
    try:
        payload = response.json()
        if not isinstance(payload, list) or len(payload) != expected:
            raise ValueError(f"expected a list of {expected} answers")
        return [read_answer(entry) for entry in payload]
    except (ValueError, LookupError, TypeError) as exc:
        # The server is at fault (an archive from another version of aigis): pause, do not drop.
        raise ServingUnavailable(
            f"TorchServe's answer cannot be read ({type(exc).__name__}: {exc}); the served "
            "archive was probably built by another version of aigis: re-export it",
            retry_after=retry_after,
        ) from None

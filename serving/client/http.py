"""The client of TorchServe's inference API: the only way the worker reaches the model.

Imports only httpx, the standard library, ``schemas`` and ``schemas.settings``, so worker hosts run
without torch. What a caller can act on:

- :class:`ServingUnavailable`: the server cannot answer now (connection refused or reset, timeout,
  5xx, model not registered, token rejected even after renewal). Retried here with exponential
  backoff and jitter; raised after ``settings.retries`` retries, with ``retry_after``. Nothing was
  decided about the items: send them again later.
- :class:`ServingRequestError`: TorchServe refused the whole request (a 4xx); sending it again
  cannot help.
- :class:`ItemError` in a result list: that one item cannot be scored; the others were.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self

import httpx

from schemas.errors import AigisError
from schemas.settings import ServingSettings
from serving.client.prediction import Prediction  # torch-free, like this module

__all__ = [
    "ItemError",
    "ItemResult",
    "ModelInfo",
    "ServingClient",
    "ServingRequestError",
    "ServingUnavailable",
]

log = logging.getLogger(__name__)

Api = Literal["inference", "management"]

PREDICT_RETRY_STATUSES: Final[frozenset[int]] = frozenset({404, 408, 429, 500, 502, 503, 504, 507})
"""Statuses after which the same prediction may succeed later. 404: the model is not registered
(yet, or during a version switch); 507: TorchServe ran out of memory for this batch."""

MANAGEMENT_RETRY_STATUSES: Final[frozenset[int]] = frozenset({429, 502, 503, 504})

_MIB: Final[int] = 1024 * 1024
_ITEM_OVERHEAD: Final[int] = 64
"""JSON punctuation and keys around one item's base64 and caption, in bytes (generous)."""


class ServingUnavailable(AigisError):  # noqa: N818 (the name the worker codes against)
    """TorchServe cannot answer now; ``retry_after`` is a suggested pause in seconds."""

    def __init__(self, detail: str, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(detail)


class ServingRequestError(AigisError):
    """TorchServe refused a whole request with ``status`` (a 4xx); retrying cannot help."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        super().__init__(detail)


@dataclass(frozen=True)
class ItemResult(Prediction):
    """The model's answer for one item: its Prediction and which model gave it, in what batch."""

    model_name: str
    model_version: str
    server_batch_size: int
    """How many requests TorchServe batched together with this item's request."""


@dataclass(frozen=True)
class ItemError:
    """Why one item could not be scored; ``reason`` is a stable code fit for a metric label."""

    reason: str
    detail: str


@dataclass(frozen=True)
class ModelInfo:
    """What the served default version of the model is."""

    name: str
    version: str
    architecture: str
    generators: tuple[str, ...]
    reads_caption: bool


class _Credentials:
    """Bearer tokens of TorchServe's inference and management APIs.

    A token given in settings is used as is. Otherwise tokens come from the key file TorchServe
    writes at start. When TorchServe rejects a token, the file is read again (someone may have
    renewed it); when it still holds the rejected key (tokens expire), the file's API key asks
    TorchServe for a new one, which TorchServe writes back to the same file. Clients sharing the
    file therefore converge on one key instead of invalidating each other's.
    """

    def __init__(self, settings: ServingSettings, key_file: Path | None) -> None:
        self._fixed = {"inference": settings.token, "management": settings.management_token}
        self._key_file = key_file if key_file is not None else settings.key_file
        self._management_url = settings.management_url.rstrip("/")
        self._keys: dict[str, str] | None = None
        self._lock = threading.Lock()

    def token(self, api: Api) -> str | None:
        fixed = self._fixed[api]
        if fixed is not None:
            return fixed.get_secret_value()
        with self._lock:
            if self._keys is None:
                self._keys = self._read()
            return self._keys.get(api)

    def renew(self, api: Api, rejected: str | None, http: httpx.Client) -> bool:
        """After TorchServe rejected ``rejected``: True when another token is now available."""
        if self._fixed[api] is not None or self._key_file is None:
            return False
        with self._lock:
            self._keys = self._read()
            if self._keys.get(api) not in (None, rejected):
                return True
            api_key = self._keys.get("API")
            if api_key is None:
                return False
            try:
                response = http.post(
                    f"{self._management_url}/token",
                    params={"type": api},
                    headers={"Authorization": f"Bearer {api_key}"},
                )
            except httpx.HTTPError:
                return False
            if response.status_code != httpx.codes.OK:
                return False
            self._keys = self._read()
            renewed = self._keys.get(api) not in (None, rejected)
        if renewed:
            log.info("TorchServe's %s token renewed through the key file", api)
        return renewed

    def _read(self) -> dict[str, str]:
        if self._key_file is None:
            return {}
        try:
            data = json.loads(self._key_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}  # token authorisation is off, or the server has not started yet
        except (OSError, ValueError) as exc:
            raise ServingUnavailable(
                f"TorchServe's key file {self._key_file} cannot be read ({exc}); "
                "check its permissions or set AIGIS_SERVING__KEY_FILE",
                retry_after=5.0,
            ) from None
        if not isinstance(data, dict):
            return {}
        return {
            kind: str(entry["key"])
            for kind, entry in data.items()
            if isinstance(entry, dict) and "key" in entry
        }


class Transport:
    """One pooled ``httpx.Client`` for both TorchServe APIs: tokens, timeouts, retries.

    Thread-safe. Shared by :class:`ServingClient` and
    ``serving.client.management.ManagementClient``.
    """

    def __init__(self, settings: ServingSettings, *, key_file: Path | None = None) -> None:
        self.settings = settings
        self._credentials = _Credentials(settings, key_file)
        self._http = httpx.Client(
            timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            limits=httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=settings.max_connections,
            ),
            # TorchServe is reached directly; a proxy from the environment would only be in the way.
            trust_env=False,
        )

    def url(self, api: Api, path: str) -> str:
        base = self.settings.inference_url if api == "inference" else self.settings.management_url
        return f"{base.rstrip('/')}/{path.lstrip('/')}"

    def send(
        self,
        method: str,
        api: Api,
        path: str,
        *,
        retry_statuses: frozenset[int],
        content: bytes | None = None,
        params: dict[str, str | int] | None = None,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> httpx.Response:
        """Send one request, retrying transport errors and ``retry_statuses`` with backoff.

        Returns the first response with any other status (success or not). Raises
        ServingUnavailable once the retries are spent, or when TorchServe rejects the token and
        no other token can be had.
        """
        url = self.url(api, path)
        allowed = self.settings.retries if retries is None else retries
        attempt = 0
        renewed = False
        while True:
            token = self._credentials.token(api)
            outcome = self._attempt(method, url, token, content, params, timeout)
            server_wait: float | None = None
            if isinstance(outcome, str):
                problem = outcome
            elif _token_rejected(outcome):
                if not renewed and self._credentials.renew(api, token, self._http):
                    renewed = True
                    continue
                raise ServingUnavailable(
                    f"TorchServe rejected the {api} token for {method} {url}; the key file "
                    "holds no valid token. Point AIGIS_SERVING__KEY_FILE at the key_file.json "
                    "of the running server (or set AIGIS_SERVING__TOKEN)",
                    retry_after=self.settings.backoff_max_s,
                )
            elif outcome.status_code not in retry_statuses:
                return outcome
            else:
                problem = f"HTTP {outcome.status_code}: {error_message(outcome)}"
                server_wait = _retry_after_header(outcome)
            delay = self._delay(attempt, server_wait)
            if attempt >= allowed:
                raise ServingUnavailable(
                    f"TorchServe did not answer {method} {url} after {attempt + 1} attempts "
                    f"({problem}); check `aigis serve status` and the server logs",
                    retry_after=delay,
                )
            log.warning(
                "%s %s failed (%s); retry %d in %.2f s", method, url, problem, attempt + 1, delay
            )
            time.sleep(delay)
            attempt += 1

    def _attempt(
        self,
        method: str,
        url: str,
        token: str | None,
        content: bytes | None,
        params: dict[str, str | int] | None,
        timeout: float | None,
    ) -> httpx.Response | str:
        """The response, or what went wrong on the way when there is none."""
        headers = {"Content-Type": "application/json"} if content is not None else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            return self._http.request(
                method,
                url,
                content=content,
                params=params,
                headers=headers,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
        except httpx.TransportError as exc:
            return f"{type(exc).__name__}: {exc or 'no detail'}"

    def _delay(self, attempt: int, server_wait: float | None) -> float:
        # Exponential backoff with "equal jitter": half the step is fixed, so a retry never comes
        # at once, and half is random, so many clients do not retry in lockstep.
        step = min(self.settings.backoff_max_s, self.settings.backoff_initial_s * 2.0**attempt)
        delay = step / 2 + random.uniform(0, step / 2)  # noqa: S311 (jitter, not security)
        return max(delay, server_wait or 0.0)

    def close(self) -> None:
        self._http.close()


class TransportOwner:
    """A client over one :class:`Transport`: ``close()`` it, or use it as a context manager."""

    _transport: Transport

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ServingClient(TransportOwner):
    """Scores images on TorchServe's ``/predictions/<model_name>``.

    Thread-safe; a context manager. Pass ``key_file=settings.serving_key_file`` when TorchServe
    runs with token authorisation and no token is set in the settings.
    """

    def __init__(self, settings: ServingSettings, *, key_file: Path | None = None) -> None:
        self._settings = settings
        self._transport = Transport(settings, key_file=key_file)
        self._path = f"predictions/{settings.model_name}"
        self._max_request_bytes = settings.max_request_mb * _MIB

    def predict(self, items: Sequence[tuple[bytes, str | None]]) -> list[ItemResult | ItemError]:
        """Score ``(image bytes, caption)`` items; one answer per item, in order.

        Sent as one request unless that would exceed ``settings.max_request_mb``.
        """
        return self.predict_many(items, request_items=max(1, len(items)), max_in_flight=1)

    def predict_many(
        self,
        items: Sequence[tuple[bytes, str | None]],
        *,
        request_items: int,
        max_in_flight: int,
    ) -> list[ItemResult | ItemError]:
        """Score items in requests of at most ``request_items``, ``max_in_flight`` at a time.

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
        if len(chunks) <= 1 or max_in_flight == 1:
            for chunk in chunks:
                self._fill(results, chunk, self._request(items, chunk))
        else:
            self._run_concurrently(items, chunks, results, max_in_flight)
        return [result for result in results if result is not None]

    def model_info(self) -> ModelInfo:
        """Name, version, architecture and labels of the model's default version."""
        response = self._transport.send(
            "GET",
            "management",
            f"models/{self._settings.model_name}",
            params={"customized": "true"},
            retry_statuses=PREDICT_RETRY_STATUSES,
        )
        raise_for_status(response)
        try:
            meta = response.json()[0]["customizedMetadata"]
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
        """True when TorchServe answers and a worker of the model's default version is READY."""
        try:
            ping = self._transport.send(
                "GET", "inference", "ping", retry_statuses=frozenset(), retries=0
            )
            if ping.status_code != httpx.codes.OK:
                return False
            described = self._transport.send(
                "GET",
                "management",
                f"models/{self._settings.model_name}",
                retry_statuses=frozenset(),
                retries=0,
            )
            if described.status_code != httpx.codes.OK:
                return False
            return any(w.get("status") == "READY" for w in described.json()[0]["workers"])
        except (AigisError, ValueError, LookupError, TypeError, AttributeError):
            return False

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
        self, items: Sequence[tuple[bytes, str | None]], chunk: list[int]
    ) -> list[ItemResult | ItemError]:
        body = json.dumps(
            [_item_json(*items[index]) for index in chunk], separators=(",", ":")
        ).encode("utf-8")
        response = self._transport.send(
            "POST", "inference", self._path, content=body, retry_statuses=PREDICT_RETRY_STATUSES
        )
        raise_for_status(response)
        return _parse_results(response, len(chunk), self._settings.backoff_max_s)

    def _run_concurrently(
        self,
        items: Sequence[tuple[bytes, str | None]],
        chunks: list[list[int]],
        results: list[ItemResult | ItemError | None],
        max_in_flight: int,
    ) -> None:
        with ThreadPoolExecutor(
            max_workers=min(max_in_flight, len(chunks)), thread_name_prefix="aigis-serving"
        ) as pool:
            futures: dict[Future[list[ItemResult | ItemError]], list[int]] = {
                pool.submit(self._request, items, chunk): chunk for chunk in chunks
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


def raise_for_status(response: httpx.Response) -> None:
    """Raise ServingRequestError for a 4xx and ServingUnavailable for a 5xx."""
    if response.is_success:
        return
    message = error_message(response)
    if response.is_client_error:
        raise ServingRequestError(
            response.status_code,
            f"TorchServe refused {response.request.method} {response.request.url.path} "
            f"(HTTP {response.status_code}: {message}); sending it again will not help",
        )
    raise ServingUnavailable(
        f"TorchServe failed {response.request.method} {response.request.url.path} "
        f"(HTTP {response.status_code}: {message}); check the server logs",
        retry_after=5.0,
    )


def error_message(response: httpx.Response) -> str:
    """The human part of a TorchServe error body (its ``message``, or our handler's detail)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "detail" in error:
            return f"{error.get('reason', 'error')}: {error['detail']}"
        if "message" in body:
            return str(body["message"])
    return response.text[:200]


def _token_rejected(response: httpx.Response) -> bool:
    # TorchServe 0.12 answers a missing, wrong or expired token with 400 InvalidKeyException.
    if response.status_code not in (400, 401, 403):
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("type") == "InvalidKeyException"


def _retry_after_header(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _encoded_size(image: bytes, caption: str | None) -> int:
    base64_size = 4 * ((len(image) + 2) // 3)
    # A caption may grow up to 6x when JSON escapes it (\\uXXXX); counting that is cheap insurance.
    return base64_size + (6 * len(caption) if caption else 0) + _ITEM_OVERHEAD


def _item_json(image: bytes, caption: str | None) -> dict[str, str]:
    item = {"image_b64": base64.b64encode(image).decode("ascii")}
    if caption is not None:
        item["caption"] = caption
    return item


def _parse_results(
    response: httpx.Response, expected: int, retry_after: float
) -> list[ItemResult | ItemError]:
    try:
        payload = response.json()
        if not isinstance(payload, list) or len(payload) != expected:
            raise ValueError(f"expected a list of {expected} answers")
        return [_parse_one(entry) for entry in payload]
    except (ValueError, LookupError, TypeError) as exc:
        # The server is at fault (an archive from another version of aigis): pause, do not drop.
        raise ServingUnavailable(
            f"TorchServe's answer cannot be read ({type(exc).__name__}: {exc}); the served "
            "archive was probably built by another version of aigis: re-export it",
            retry_after=retry_after,
        ) from None


def _parse_one(entry: Any) -> ItemResult | ItemError:
    if "error" in entry:
        error = entry["error"]
        return ItemError(reason=str(error["reason"]), detail=str(error["detail"]))
    return ItemResult(
        p_ai=float(entry["p_ai"]),
        decision=str(entry["decision"]),
        generator=str(entry["generator"]),
        generator_probs={str(k): float(v) for k, v in entry["generator_probs"].items()},
        confidence_a=float(entry["confidence_a"]),
        confidence_b=float(entry["confidence_b"]),
        model_name=str(entry["model_name"]),
        model_version=str(entry["model_version"]),
        server_batch_size=int(entry["server_batch_size"]),
    )

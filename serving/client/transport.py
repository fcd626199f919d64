"""How the clients reach TorchServe: one pooled HTTP transport with tokens, retries and backoff.

Shared by the inference client (:mod:`serving.client.http`) and the management client
(:mod:`serving.client.management`). Torch-free. What a caller can act on:

- :class:`ServingUnavailable`: the server cannot answer now (connection refused or reset, timeout,
  5xx, model not registered, token rejected even after renewal). Retried with exponential backoff
  and jitter; raised after ``settings.retries`` retries, with ``retry_after``. Nothing was decided
  about the request: send it again later.
- :class:`ServingRequestError`: TorchServe refused the whole request (a 4xx); sending it again
  cannot help.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Self

import httpx
import structlog

from schemas.backoff import backoff_delay
from schemas.errors import AigisError
from schemas.settings import ServingSettings

log = structlog.get_logger(__name__)

Api = Literal["inference", "management"]

MANAGEMENT_RETRY_STATUSES: Final[frozenset[int]] = frozenset({429, 502, 503, 504})


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
            log.info("torchserve_token_renewed", api=api)
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
        content_type: str = "application/json",
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
            outcome = self._attempt(method, url, token, (content, content_type), params, timeout)
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
            delay = backoff_delay(
                attempt + 1,
                self.settings.backoff_initial_s,
                self.settings.backoff_max_s,
                server_wait,
            )
            if attempt >= allowed:
                raise ServingUnavailable(
                    f"TorchServe did not answer {method} {url} after {attempt + 1} attempts "
                    f"({problem}); check `aigis serve status` and the server logs",
                    retry_after=delay,
                )
            # Debug only: the caller reports the outcome once (the worker's held batch is one
            # line per hold), so a retry inside one call is no news to an operator.
            log.debug(
                "serving_request_retry",
                method=method,
                url=url,
                problem=problem,
                retry=attempt + 1,
                retry_in_s=round(delay, 2),
            )
            time.sleep(delay)
            attempt += 1

    def _attempt(
        self,
        method: str,
        url: str,
        token: str | None,
        body: tuple[bytes | None, str],
        params: dict[str, str | int] | None,
        timeout: float | None,
    ) -> httpx.Response | str:
        """The response, or what went wrong on the way when there is none. ``body``: the
        content and its type."""
        content, content_type = body
        headers = {"Content-Type": content_type} if content is not None else {}
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

"""Loading an image over http(s) under the fetch policy, with deadlines that hold.

Per try: resolve the host here, judge every address it resolved to, connect to a judged address
(TLS still verified against the host name, which is also sent as SNI and Host), and follow
redirects by hand, judging each hop the same way, so no lookup done later by a library can lead
somewhere else. Every network operation of a try (connect, TLS handshake, each read and write)
is bounded by the time left to it, so a server that sends a byte every few seconds is cut off at
the deadline. Timeouts, HTTP 5xx and 429 are tried again with backoff; nothing else is.

This uses httpcore, httpx's own transport, directly: httpx offers no way to bound each read by a
deadline, and httpcore's network backend does.
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpcore
import httpx
import structlog

from schemas.backoff import backoff_delay
from schemas.uris import redact_uri
from worker.fetch.errors import FetchError, not_allowed, timed_out, too_large, unreachable
from worker.fetch.policy import DEFAULT_PORTS, FetchPolicy

log = structlog.get_logger(__name__)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HEADERS = [
    (b"Accept", b"image/*"),
    # Compressed bodies would be decoded past the size limit; images are compressed already.
    (b"Accept-Encoding", b"identity"),
    (b"User-Agent", b"aigis"),
]


class _TransientError(Exception):
    """A try failed in a way that another try may not: a timeout, HTTP 5xx or 429."""

    def __init__(self, error: FetchError, after: float | None = None) -> None:
        super().__init__(error.cause)
        self.error = error
        self.after = after


class WebLoader:
    """Loads http(s) URLs that ``policy`` admits. Thread-safe; close it to stop its lookups."""

    def __init__(self, policy: FetchPolicy, *, lookups: int = 8) -> None:
        self._policy = policy
        self._settings = policy.settings
        # getaddrinfo has no timeout of its own: lookups run here and are waited on only until
        # the try's deadline.
        self._lookups = ThreadPoolExecutor(lookups, thread_name_prefix="fetch-lookup")
        self._ssl = httpx.create_ssl_context()

    def close(self) -> None:
        self._lookups.shutdown(wait=False, cancel_futures=True)

    def load(self, url: httpx.URL, max_bytes: int) -> bytes:
        s = self._settings
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._try(url, max_bytes, time.monotonic() + s.timeout_s)
            except _TransientError as failed:
                if attempt > s.retries:
                    raise failed.error from None
                uri = redact_uri(str(url))
                log.debug("fetch_retry", uri=uri, attempt=attempt, cause=failed.error.cause)
                wait = backoff_delay(attempt, s.backoff_initial_s, s.backoff_max_s, failed.after)
                time.sleep(wait)

    def _try(self, url: httpx.URL, max_bytes: int, deadline: float) -> bytes:
        for _ in range(self._settings.max_redirects + 1):
            url = self._policy.web_url(url)
            host = url.raw_host.decode("ascii")
            port = url.port or DEFAULT_PORTS[url.scheme]
            addresses = self._resolve(host, port, deadline)
            self._policy.check_addresses(host, addresses)
            got = self._get(url, host, port, addresses, max_bytes, deadline)
            if isinstance(got, bytes):
                return got
            url = got
        raise unreachable("too many redirects")

    def _resolve(self, host: str, port: int, deadline: float) -> list[str]:
        lookup = self._lookups.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        try:
            found = lookup.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            lookup.cancel()
            raise _TransientError(timed_out("name lookup")) from None
        except (OSError, UnicodeError, ValueError) as exc:
            raise unreachable(f"name lookup: {type(exc).__name__}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        if not addresses:
            raise unreachable("name lookup: no address")
        return addresses

    def _get(
        self,
        url: httpx.URL,
        host: str,
        port: int,
        addresses: list[str],
        max_bytes: int,
        deadline: float,
    ) -> bytes | httpx.URL:
        """The body, or where a redirect points. Tries each address until one connects."""
        headers = [(b"Host", url.netloc), *_HEADERS]
        extensions: dict[str, Any] = {"sni_hostname": host}
        # A pool per request: a connection opened and verified for one host name is never
        # reused for another name that resolves to the same address.
        with httpcore.ConnectionPool(
            ssl_context=self._ssl,
            max_keepalive_connections=0,
            network_backend=_DeadlineBackend(deadline),
        ) as pool:
            cause = "no address"
            for address in addresses:
                target = httpcore.URL(
                    scheme=url.raw_scheme, host=address.encode(), port=port, target=url.raw_path
                )
                try:
                    with pool.stream(
                        "GET", target, headers=headers, extensions=extensions
                    ) as response:
                        return answer(url, response, max_bytes)
                except httpcore.ConnectError as exc:
                    cause = f"connect: {type(exc).__name__}"
                except httpcore.TimeoutException as exc:
                    raise _TransientError(timed_out(type(exc).__name__)) from None
                except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
                    raise unreachable(type(exc).__name__) from None
        raise unreachable(cause)


def answer(url: httpx.URL, response: httpcore.Response, max_bytes: int) -> bytes | httpx.URL:
    status = response.status
    headers = httpx.Headers(response.headers)
    if status in _REDIRECTS:
        location = headers.get("location")
        if not location:
            raise unreachable(f"HTTP {status} without Location")
        try:
            return url.join(location)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise not_allowed("a redirect to an invalid URI") from None
    if status == 429 or status >= 500:
        after = retry_after(headers.get("retry-after"))
        raise _TransientError(unreachable(f"HTTP {status}"), after)
    if status != 200:
        raise unreachable(f"HTTP {status}")
    declared = headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise too_large(max_bytes)
    body = bytearray()
    for chunk in response.iter_stream():
        body += chunk
        if len(body) > max_bytes:
            raise too_large(max_bytes)
    return bytes(body)


def retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delta seconds or an HTTP date); None if unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _left(deadline: float, timeout: float | None, expired: type[Exception]) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the try's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _left(self._deadline, timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _left(self._deadline, timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = _left(self._deadline, timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._stream.start_tls(ssl_context, server_hostname, left), self._deadline
        )

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own sockets, each operation bounded by the time left to the try (Python's
    socket timeouts bound a whole TLS handshake or read, not just one system call)."""

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        left = _left(self._deadline, timeout, httpcore.ConnectTimeout)
        stream = self._sockets.connect_tcp(host, port, left, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

"""A loopback origin for the fetch tests: a real HTTP server that counts connections, so a
test can show that a refused URI was refused before anything was connected to."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from schemas.settings_fetch import FetchSettings
from worker.fetch import UriReader

BODY = b"\x89PNG" + b"x" * 2_000

Route = Callable[[BaseHTTPRequestHandler], None]


class Origin(ThreadingHTTPServer):
    """A loopback HTTP server: ``routes`` maps a path to what answers it (404 otherwise)."""

    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        super().__init__((host, 0), _Handler)
        self.host = host
        self.scheme = "http"
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
            self.scheme = "https"
        self.routes: dict[str, Route] = {"/ok.png": ok}
        self.connections = 0
        self.requests: list[tuple[str, float]] = []
        """(path, time.monotonic()) of each request, in order."""

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str = "/ok.png", host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.host}:{self.port}{path}"

    def get_request(self) -> Any:
        pair = super().get_request()
        self.connections += 1
        return pair

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-answer (cut at its deadline) is the point of a test


class _Handler(BaseHTTPRequestHandler):
    server: Origin

    def do_GET(self) -> None:
        self.server.requests.append((self.path, time.monotonic()))
        route = self.server.routes.get(self.path.split("?")[0])
        if route is None:
            self.send_error(404)
        else:
            route(self)

    def log_message(self, *args: object) -> None:
        pass


def ok(h: BaseHTTPRequestHandler, body: bytes = BODY) -> None:
    h.send_response(200)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def status(code: int, **headers: str) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(code)
        for name, value in headers.items():
            h.send_header(name.replace("_", "-"), value)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return route


def trickle(h: BaseHTTPRequestHandler) -> None:
    """A slow sender: one byte every 0.3 s of a 100-byte body."""
    h.send_response(200)
    h.send_header("Content-Length", "100")
    h.end_headers()
    for _ in range(100):
        h.wfile.write(b"x")
        h.wfile.flush()
        time.sleep(0.3)


def redirect(location: str, code: int = 302) -> Route:
    return status(code, Location=location)


def in_turn(*routes: Route) -> Route:
    """Each request gets the next route; the last one answers every request after."""
    served = iter(range(len(routes)))

    def route(h: BaseHTTPRequestHandler) -> None:
        routes[next(served, len(routes) - 1)](h)

    return route


def loopback(origin: Origin, **fields: Any) -> FetchSettings:
    """A fetch policy that admits ``origin`` (plain http on 127.0.0.1 at its port, the opt-in a
    loopback test needs): 1 s per try, no retries, quick backoff; ``fields`` override."""
    base: dict[str, Any] = {
        "schemes": {"http"},
        "ports": {origin.port},
        "private_networks": ["127.0.0.1/32"],
        "timeout_s": 1.0,
        "retries": 0,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.1,
    }
    return FetchSettings.model_validate({**base, **fields})


def serve(tls: ssl.SSLContext | None = None) -> Iterator[Origin]:
    """An origin answering in a thread until the generator is closed."""
    server = Origin(tls)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


MakeReader = Callable[..., UriReader]
"""The ``make_reader`` fixture: ``make_reader(**fetch_settings) -> UriReader``."""

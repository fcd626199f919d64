"""http(s) loads against loopback origins: refusals before any connection, redirects judged hop
by hop, deadlines on every read, retries, and dead-letter details that echo nothing."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.worker.fetch.origin import (
    BODY,
    MakeReader,
    Origin,
    in_turn,
    ok,
    redirect,
    serve,
    status,
    trickle,
)
from worker.fetch import FetchError, UriReader
from worker.fetch.web import retry_after

pytestmark = pytest.mark.unit


def refused(reader: UriReader, uri: str, max_bytes: int = 1_000_000) -> FetchError:
    with pytest.raises(FetchError) as caught:
        reader.read(uri, max_bytes)
    return caught.value


def test_an_admitted_loopback_origin_is_loaded(make_reader: MakeReader, origin: Origin) -> None:
    assert make_reader().read(origin.url(), 1_000_000) == BODY


NOT_LISTED: dict[str, object] = {"private_networks": []}
REFUSED = {
    "http-off-by-default": ("{base}/ok.png", {"schemes": {"https"}}),
    "loopback-not-listed": ("{base}/ok.png", NOT_LISTED),
    "port-not-admitted": ("{base}/ok.png", {"ports": {443}}),
    "credentials": ("http://u:p@127.0.0.1:{port}/ok.png", {}),
    "by-name": ("http://localhost:{port}/ok.png", NOT_LISTED),
    "decimal": ("http://2130706433:{port}/ok.png", NOT_LISTED),
    "hex": ("http://0x7f.1:{port}/ok.png", NOT_LISTED),
    "v4-mapped": ("http://[::ffff:127.0.0.1]:{port}/ok.png", NOT_LISTED),
    "unspecified": ("http://0.0.0.0:{port}/ok.png", {"private_networks": ["0.0.0.0/0"]}),
    "unspecified-v6": ("http://[::]:{port}/ok.png", {"private_networks": ["::/0"]}),
}


@pytest.mark.parametrize(("uri", "settings"), REFUSED.values(), ids=REFUSED.keys())
def test_each_refusal_comes_before_any_connection(
    make_reader: MakeReader, origin: Origin, uri: str, settings: dict[str, object]
) -> None:
    err = refused(make_reader(**settings), uri.format(base=origin.url(""), port=origin.port))
    assert err.reason == "uri_not_allowed"
    assert origin.connections == 0


@pytest.mark.parametrize(
    "uri",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://224.0.0.1/",
    ],
)
def test_link_local_and_multicast_stay_refused_even_when_listed(
    make_reader: MakeReader, uri: str
) -> None:
    reader = make_reader(ports={80}, private_networks=["0.0.0.0/0", "::/0"])
    started = time.monotonic()
    assert refused(reader, uri).reason == "uri_not_allowed"
    assert time.monotonic() - started < 0.5  # refused, not a connect attempt that timed out


def test_a_redirect_to_the_metadata_address_is_refused(
    make_reader: MakeReader, origin: Origin
) -> None:
    origin.routes["/r"] = redirect("http://169.254.169.254/latest/meta-data/")
    reader = make_reader(ports={origin.port, 80}, private_networks=["127.0.0.1/32", "0.0.0.0/0"])
    assert refused(reader, origin.url("/r")).reason == "uri_not_allowed"


def test_a_redirect_to_another_loopback_port_is_refused_before_connecting(
    make_reader: MakeReader, origin: Origin, other_origin: Origin
) -> None:
    origin.routes["/r"] = redirect(other_origin.url())
    assert refused(make_reader(), origin.url("/r")).reason == "uri_not_allowed"
    assert other_origin.connections == 0
    # The same hop, once that port is admitted too, is followed.
    reader = make_reader(ports={origin.port, other_origin.port})
    assert reader.read(origin.url("/r"), 1_000_000) == BODY


def test_a_redirect_to_a_file_is_refused_even_under_a_file_root(
    make_reader: MakeReader, origin: Origin, tmp_path: Path
) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(BODY)
    origin.routes["/r"] = redirect(image.as_uri())
    origin.routes["/etc"] = redirect("file:///etc/passwd", code=307)
    reader = make_reader(file_roots=[tmp_path])
    assert refused(reader, origin.url("/r")).reason == "uri_not_allowed"
    assert refused(reader, origin.url("/etc")).reason == "uri_not_allowed"


def test_relative_redirects_are_followed_and_loops_are_bounded(
    make_reader: MakeReader, origin: Origin
) -> None:
    origin.routes["/r"] = redirect("/ok.png", code=301)
    origin.routes["/loop"] = redirect("/loop")
    assert make_reader().read(origin.url("/r"), 1_000_000) == BODY
    err = refused(make_reader(max_redirects=3), origin.url("/loop"))
    assert err.reason == "unreachable_uri"
    assert [p for p, _ in origin.requests].count("/loop") == 4


def test_a_byte_every_0_3_s_is_cut_off_at_the_deadline(
    make_reader: MakeReader, origin: Origin
) -> None:
    origin.routes["/slow"] = trickle
    started = time.monotonic()
    err = refused(make_reader(timeout_s=1.0), origin.url("/slow"))
    assert err.reason == "fetch_timeout"
    assert 0.9 < time.monotonic() - started < 1.4


@pytest.fixture
def headertrickler() -> Iterator[int]:
    """A port whose server sends its status line and headers one byte every 0.3 s."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Padding: " + b"x" * 100:
                if stop.wait(0.3):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()


def testtrickled_headers_are_cut_off_at_the_deadline(
    make_reader: MakeReader, headertrickler: int
) -> None:
    reader = make_reader(ports={headertrickler}, timeout_s=1.0)
    started = time.monotonic()
    err = refused(reader, f"http://127.0.0.1:{headertrickler}/")
    assert err.reason == "fetch_timeout"
    assert time.monotonic() - started < 1.4


def test_a_silent_server_times_out_and_a_timeout_is_tried_again(
    make_reader: MakeReader, origin: Origin
) -> None:
    origin.routes["/stall"] = in_turn(lambda h: time.sleep(1.5), ok)
    assert make_reader(timeout_s=0.5, retries=1).read(origin.url("/stall"), 1_000_000) == BODY
    assert len(origin.requests) == 2


def test_503_then_200_is_retried_and_succeeds(make_reader: MakeReader, origin: Origin) -> None:
    origin.routes["/flaky"] = in_turn(status(503), ok)
    assert make_reader(retries=2).read(origin.url("/flaky"), 1_000_000) == BODY
    assert len(origin.requests) == 2


def test_5xx_until_the_retries_are_spent_is_unreachable(
    make_reader: MakeReader, origin: Origin
) -> None:
    origin.routes["/down"] = status(500)
    assert refused(make_reader(retries=2), origin.url("/down")).reason == "unreachable_uri"
    assert len(origin.requests) == 3


@pytest.mark.parametrize("code", [400, 403, 404, 410])
def test_4xx_is_not_retried(make_reader: MakeReader, origin: Origin, code: int) -> None:
    origin.routes["/no"] = status(code)
    assert refused(make_reader(retries=3), origin.url("/no")).reason == "unreachable_uri"
    assert len(origin.requests) == 1


def test_retry_after_is_honoured(make_reader: MakeReader, origin: Origin) -> None:
    origin.routes["/busy"] = in_turn(status(429, Retry_After="1"), ok)
    reader = make_reader(retries=1, backoff_initial_s=0.01, backoff_max_s=5.0)
    assert reader.read(origin.url("/busy"), 1_000_000) == BODY
    (_, first), (_, second) = origin.requests
    assert second - first >= 0.95


def test_retry_after_is_capped(make_reader: MakeReader, origin: Origin) -> None:
    origin.routes["/busy"] = in_turn(status(503, Retry_After="3600"), ok)
    reader = make_reader(retries=1, backoff_initial_s=0.01, backoff_max_s=0.2)
    started = time.monotonic()
    assert reader.read(origin.url("/busy"), 1_000_000) == BODY
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), (" 2 ", 2.0), ("soon", None), ("²", None), ("-1", None), (None, None)],
)
def test_retry_after_values(header: str | None, seconds: float | None) -> None:
    assert retry_after(header) == seconds


def test_an_http_date_retry_after_counts_from_now() -> None:
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert 3500 < (retry_after("Fri, 01 Jan 2100 00:00:00 GMT") or 0) < 3e9


def test_size_limits_hold_with_and_without_a_declared_length(
    make_reader: MakeReader, origin: Origin
) -> None:
    def undeclared(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(BODY)

    origin.routes["/undeclared"] = undeclared
    reader = make_reader()
    for path in ("/ok.png", "/undeclared"):
        assert refused(reader, origin.url(path), max_bytes=100).reason == "image_too_large"
    assert reader.read(origin.url("/undeclared"), 1_000_000) == BODY


def test_an_empty_body_is_an_empty_image(make_reader: MakeReader, origin: Origin) -> None:
    origin.routes["/empty"] = status(200)
    assert refused(make_reader(), origin.url("/empty")).reason == "empty_image"


@pytest.mark.parametrize("path", ["/missing", "/down", "/refused"])
def test_details_echo_no_status_address_or_uri(
    make_reader: MakeReader, origin: Origin, path: str
) -> None:
    origin.routes["/down"] = status(503)
    uri = origin.url(path) + "?X-Amz-Signature=secret"
    if path == "/refused":
        with socket.create_server(("127.0.0.1", 0)) as closed:
            port = closed.getsockname()[1]
        uri = f"http://127.0.0.1:{port}/x?X-Amz-Signature=secret"
        reader = make_reader(ports={port})
    else:
        reader = make_reader()
    err = refused(reader, uri)
    assert err.reason == "unreachable_uri"
    for leak in ("404", "503", "127.0.0.1", str(origin.port), "secret", "refused", "Errno"):
        assert leak not in err.detail


@pytest.fixture(scope="module")
def tls_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Origin, Path]]:
    """An https origin on 127.0.0.1 whose certificate names ``localhost`` only, and the
    certificate to trust it by."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the TLS tests make their certificate with the openssl command; install it")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    for server in serve(context):
        yield server, cert


def test_tls_is_verified_against_the_host_name_not_the_address_connected_to(
    make_reader: MakeReader, tls_origin: tuple[Origin, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cert = tls_origin
    settings = {
        "schemes": {"https"},
        "ports": {server.port},
        "private_networks": ["127.0.0.1/32", "::1/128"],
    }
    untrusted = make_reader(**settings)
    assert refused(untrusted, server.url(host="localhost")).reason == "unreachable_uri"
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    reader = make_reader(**settings)
    assert reader.read(server.url(host="localhost"), 1_000_000) == BODY
    # Same server, same address; the certificate does not name 127.0.0.1.
    assert refused(reader, server.url(host="127.0.0.1")).reason == "unreachable_uri"

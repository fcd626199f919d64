"""The serving client's splitting, ordering, retries and token renewal, against a stub server.

The stub speaks just enough of TorchServe's protocol to make each behaviour happen on demand
(a 503, an expired token); the same client runs against the real TorchServe in test_client.py.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from schemas.settings import ServingSettings
from serving.client import wire
from serving.client.http import ServingClient
from serving.client.transport import ServingRequestError, ServingUnavailable
from serving.client.wire import ItemError, ItemResult

pytestmark = pytest.mark.unit


@dataclass
class Stub:
    """What the stub server does next, and what it saw."""

    key: str | None = None
    """The inference token it accepts; None: no authorisation."""
    key_file: Path | None = None
    fail_next: int = 0
    """Answer this many predictions 503 first."""
    status: int = 200
    wrong_count: bool = False
    requests: list[int] = field(default_factory=list)
    """Items per prediction request that reached the model."""
    sizes: list[int] = field(default_factory=list)
    attempts: int = 0
    renewals: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(stub: Stub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            url = urlsplit(self.path)
            if url.path == "/token":
                self._renew(parse_qs(url.query)["type"][0])
                return
            with stub.lock:
                stub.attempts += 1
                if (
                    stub.key is not None
                    and self.headers.get("Authorization") != f"Bearer {stub.key}"
                ):
                    self._send(400, {"code": 400, "type": "InvalidKeyException", "message": "x"})
                    return
                if stub.fail_next:
                    stub.fail_next -= 1
                    self._send(503, {"code": 503, "type": "ServiceUnavailableException"})
                    return
                if stub.status != 200:
                    self._send(stub.status, {"code": stub.status, "message": "refused"})
                    return
                if wire.is_compact(body):
                    items = [header for header, _ in wire.read_compact(body, max_items=10**6)]
                else:
                    items = json.loads(body)
                stub.requests.append(len(items))
                stub.sizes.append(len(body))
            answers = [_answer(item) for item in items]
            self._send(200, answers[:-1] if stub.wrong_count else answers)

        def _renew(self, kind: str) -> None:
            assert stub.key_file is not None
            keys = json.loads(stub.key_file.read_text())
            if self.headers.get("Authorization") != f"Bearer {keys['API']['key']}":
                self._send(400, {"code": 400, "type": "InvalidKeyException"})
                return
            stub.renewals += 1
            stub.key = f"renewed-{stub.renewals}"
            keys[kind]["key"] = stub.key
            stub.key_file.write_text(json.dumps(keys))
            self._send(200, {})

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _answer(item: dict[str, str]) -> dict[str, Any]:
    # The caption carries the item's index, so the answer says which item it belongs to.
    return {
        "p_ai": int(item.get("caption") or 0) / 1000,
        "decision": "human",
        "generator": "real",
        "generator_probs": {"real": 1.0},
        "confidence_a": 1.0,
        "confidence_b": 1.0,
        "model_name": "detector",
        "model_version": "1",
        "server_batch_size": 1,
    }


@pytest.fixture
def stub() -> Iterator[tuple[Stub, ServingSettings]]:
    state = Stub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    settings = ServingSettings(
        inference_url=url,
        management_url=url,
        retries=3,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
    )
    try:
        yield state, settings
    finally:
        server.shutdown()
        server.server_close()


def _items(n: int, size: int = 10) -> list[tuple[bytes, str | None]]:
    return [(bytes(size), str(i)) for i in range(n)]


def test_items_are_split_into_requests_and_answered_in_order(
    stub: tuple[Stub, ServingSettings],
) -> None:
    state, settings = stub
    with ServingClient(settings) as client:
        results = client.predict_many(_items(23), request_items=4, max_in_flight=3)
    assert [r.p_ai for r in results if isinstance(r, ItemResult)] == [i / 1000 for i in range(23)]
    assert sorted(state.requests) == [3, 4, 4, 4, 4, 4]


def test_requests_stay_under_the_size_limit_and_an_oversized_item_is_not_sent(
    stub: tuple[Stub, ServingSettings],
) -> None:
    state, settings = stub
    limited = settings.model_copy(update={"max_request_mb": 1})
    items = [(bytes(300_000), "0"), (bytes(300_000), "1"), (bytes(900_000), "2"), (b"x", "3")]
    with ServingClient(limited) as client:
        results = client.predict_many(items, request_items=8, max_in_flight=2)
    assert isinstance(results[2], ItemError)
    assert results[2].reason == "image_too_large"
    assert [r.p_ai for r in results if isinstance(r, ItemResult)] == [0.0, 0.001, 0.003]
    assert sum(state.requests) == 3
    assert max(state.sizes) <= 1024 * 1024


def test_503_is_retried_with_backoff(stub: tuple[Stub, ServingSettings]) -> None:
    state, settings = stub
    state.fail_next = 2
    with ServingClient(settings) as client:
        [result] = client.predict(_items(1))
    assert isinstance(result, ItemResult)
    assert state.attempts == 3


def test_persistent_503_becomes_serving_unavailable(stub: tuple[Stub, ServingSettings]) -> None:
    state, settings = stub
    state.fail_next = 100
    with ServingClient(settings) as client, pytest.raises(ServingUnavailable) as caught:
        client.predict(_items(1))
    assert state.attempts == settings.retries + 1
    assert caught.value.retry_after > 0
    assert "503" in str(caught.value)


def test_a_refused_request_is_not_retried(stub: tuple[Stub, ServingSettings]) -> None:
    state, settings = stub
    state.status = 413
    with ServingClient(settings) as client, pytest.raises(ServingRequestError) as caught:
        client.predict(_items(2))
    assert caught.value.status == 413
    assert state.attempts == 1


def test_an_answer_of_the_wrong_shape_is_the_servers_fault(
    stub: tuple[Stub, ServingSettings],
) -> None:
    state, settings = stub
    state.wrong_count = True
    with ServingClient(settings) as client, pytest.raises(ServingUnavailable, match="re-export"):
        client.predict(_items(3))


def test_an_expired_token_is_renewed_through_the_key_file(
    stub: tuple[Stub, ServingSettings], tmp_path: Path
) -> None:
    state, settings = stub
    key_file = tmp_path / "key_file.json"
    keys = {"inference": {"key": "expired"}, "management": {"key": "m"}, "API": {"key": "api"}}
    key_file.write_text(json.dumps(keys))
    state.key, state.key_file = "current-but-unknown", key_file
    with ServingClient(settings, key_file=key_file) as client:
        [result] = client.predict(_items(1))
        assert isinstance(result, ItemResult)
        assert state.renewals == 1
        # Someone else renewed it meanwhile: the client picks the new key up from the file.
        keys["inference"]["key"] = state.key = "renewed-elsewhere"
        key_file.write_text(json.dumps(keys))
        [result] = client.predict(_items(1))
    assert isinstance(result, ItemResult)
    assert state.renewals == 1


def test_a_rejected_fixed_token_is_unavailable_not_a_bad_request(
    stub: tuple[Stub, ServingSettings],
) -> None:
    state, settings = stub
    state.key = "right"
    wrong = settings.model_copy(update={"token": SecretStr("wrong")})
    with ServingClient(wrong) as client, pytest.raises(ServingUnavailable, match="token"):
        client.predict(_items(1))


def test_nothing_listening_is_unavailable_within_the_backoff() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = ServingSettings(
        inference_url=f"http://127.0.0.1:{port}",
        management_url=f"http://127.0.0.1:{port}",
        retries=2,
        backoff_initial_s=0.05,
    )
    started = time.monotonic()
    with ServingClient(settings) as client:
        with pytest.raises(ServingUnavailable, match="ConnectError"):
            client.predict(_items(1))
        assert client.ready() is False
    assert time.monotonic() - started < 3.0


def test_the_handler_reads_what_the_client_writes_and_back() -> None:
    from serving.client.prediction import Prediction

    image, caption = b"\x89PNG\r\n\x1a\nbytes", "a cat on a mat"
    assert wire.read_item(wire.item_json(image, caption), max_image_bytes=1024) == (
        image,
        caption,
    )
    assert wire.read_item(wire.item_json(image, None), max_image_bytes=1024) == (image, None)
    prediction = Prediction(0.9, "ai_generated", "sdxl", {"real": 0.1, "sdxl": 0.9}, 0.9, 0.9)
    entry = wire.result_json(prediction, model_name="d", model_version="3", server_batch_size=2)
    answer = wire.read_answer(json.loads(wire.dumps(entry)))
    assert isinstance(answer, ItemResult)
    assert (answer.p_ai, answer.generator, answer.model_version) == (0.9, "sdxl", "3")
    assert answer.signals == ()
    signal = {
        "kind": "sd_watermark",
        "value": "48 of 48",
        "generator": "sdxl",
        "strength": "claimed",
    }
    entry = wire.result_json(
        prediction, model_name="d", model_version="3", server_batch_size=1, signals=[signal]
    )
    answer = wire.read_answer(json.loads(wire.dumps(entry)))
    assert isinstance(answer, ItemResult)
    assert answer.signals == (signal,)
    error = wire.read_answer(wire.error_json("bad_base64", "not base64"))
    assert error == ItemError("bad_base64", "not base64")
    with pytest.raises(wire.WireError) as refused:
        wire.read_item({"image_b64": "QUJD", "extra": 1}, max_image_bytes=1024)
    assert refused.value.reason == "invalid_item"


def test_a_compact_body_carries_the_images_own_bytes_and_reads_back() -> None:
    items: list[tuple[bytes, str | None]] = [
        (b"\xff\xd8\xff jpeg \n bytes", "a caption\nwith a line break"),
        (b"", None),
        (b"\x89PNG\r\n\x1a\n", "\u00e9t\u00e9"),
    ]
    body = wire.compact_body(items)
    assert wire.is_compact(body)
    assert len(body) < len(wire.dumps([wire.item_json(*i) for i in items]))
    framed = wire.read_compact(body, max_items=8)
    read = [wire.read_compact_item(h, i, max_image_bytes=1024) for h, i in framed]
    assert read == items


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (wire.COMPACT_MAGIC, "bad_compact_body"),  # no header line
        (wire.COMPACT_MAGIC + b"{oops\n", "bad_compact_body"),
        (wire.COMPACT_MAGIC + b"\xff\xfe\n", "bad_compact_body"),
        (wire.COMPACT_MAGIC + b"[1, 2]\n", "bad_compact_body"),
        (wire.COMPACT_MAGIC + b'{"items": 3}\n', "bad_compact_body"),
        (wire.COMPACT_MAGIC + b'{"items": [7]}\n', "bad_compact_body"),
        (wire.COMPACT_MAGIC + b'{"items": []}\n', "no_items"),
        (
            wire.COMPACT_MAGIC + b'{"items": [{"size": 1}, {"size": 1}, {"size": 1}]}\nabc',
            "too_many_items",
        ),
        (wire.COMPACT_MAGIC + b'{"items": [{"caption": "x"}]}\n', "bad_compact_body"),
        (wire.COMPACT_MAGIC + b'{"items": [{"size": -1}]}\n', "bad_compact_body"),
        (wire.COMPACT_MAGIC + b'{"items": [{"size": true}]}\nx', "bad_compact_body"),
        (wire.COMPACT_MAGIC + b'{"items": [{"size": 2.0}]}\nxy', "bad_compact_body"),
        (wire.COMPACT_MAGIC + b'{"items": [{"size": 5}]}\nabc', "bad_compact_body"),  # truncated
        (wire.COMPACT_MAGIC + b'{"items": [{"size": 1}]}\nabc', "bad_compact_body"),  # trailing
        (wire.COMPACT_MAGIC + b'{"items": [{"size": 99999999999999999999}]}\n', "bad_compact_body"),
        (wire.COMPACT_MAGIC + b"[" * 10_000 + b"]" * 10_000 + b"\n", "bad_compact_body"),
        (wire.COMPACT_MAGIC + b"[" * 100_000 + b"\n", "too_many_items"),  # not parsed at all
        (wire.COMPACT_MAGIC + b'{"items": [{"size": ' + b"9" * 5000 + b"}]}\n", "bad_compact_body"),
        (wire.COMPACT_MAGIC + b'{"items": [{"size": 1}], "x": NaN}\nx', "ok"),
    ],
)
def test_a_compact_body_that_does_not_frame_its_items_is_refused(body: bytes, reason: str) -> None:
    if reason == "ok":  # framed: whatever else the header holds is not the items' business
        assert [image for _, image in wire.read_compact(body, max_items=2)] == [b"x"]
        return
    with pytest.raises(wire.WireError) as refused:
        wire.read_compact(body, max_items=2)
    assert refused.value.reason == reason


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_whatever_follows_the_magic_is_framed_items_or_a_wire_error(tail: bytes) -> None:
    framed, reason = [], None
    try:
        framed = wire.read_compact(wire.COMPACT_MAGIC + tail, max_items=4)
    except wire.WireError as exc:
        reason = exc.reason
    assert reason in {None, "bad_compact_body", "no_items", "too_many_items"}
    for header, image in framed:
        with contextlib.suppress(wire.WireError):
            wire.read_compact_item(header, image, max_image_bytes=100)


def test_a_compact_items_own_faults_are_its_own() -> None:
    body = wire.COMPACT_MAGIC + (
        b'{"items": [{"size": 1, "caption": 5}, {"size": 1, "image_b64": "x"}, {"size": 4},'
        b' {"size": 1, "caption": "ok"}]}\n' + b"a" + b"b" + b"cdef" + b"g"
    )
    reasons = []
    for header, image in wire.read_compact(body, max_items=8):
        try:
            wire.read_compact_item(header, image, max_image_bytes=3)
            reasons.append("ok")
        except wire.WireError as exc:
            reasons.append(exc.reason)
    assert reasons == ["invalid_item", "invalid_item", "image_too_large", "ok"]

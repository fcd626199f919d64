"""The serving client against the real TorchServe (token authorisation on, tiny model)."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import httpx
import pytest

from serving.client.http import ModelInfo, ServingClient
from serving.client.transport import ServingRequestError, ServingUnavailable
from serving.client.wire import ItemError, ItemResult

if TYPE_CHECKING:
    from tests.serving.conftest import Served

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_micro_batch_returns_its_items_in_order(
    torchserve: Served, make_png: Callable[..., bytes]
) -> None:
    colours = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0), (0, 250, 250)]
    items = [(make_png(colour), f"caption {i}") for i, colour in enumerate(colours)]
    with ServingClient(torchserve.serving, key_file=torchserve.key_file) as client:
        together = client.predict(items)
        alone = [client.predict([item])[0] for item in items]
    assert all(isinstance(r, ItemResult) for r in together + alone)
    p_together = [r.p_ai for r in together if isinstance(r, ItemResult)]
    p_alone = [r.p_ai for r in alone if isinstance(r, ItemResult)]
    assert len({round(p, 6) for p in p_alone}) == len(items)  # distinct, so order is visible
    assert p_together == pytest.approx(p_alone, abs=1e-5)
    first = together[0]
    assert isinstance(first, ItemResult)
    assert (first.model_name, first.model_version) == ("detector", "1")
    assert sum(first.generator_probs.values()) == pytest.approx(1.0, abs=1e-5)


def test_the_compact_body_and_json_get_the_same_answers(
    torchserve: Served, make_png: Callable[..., bytes]
) -> None:
    items: list[tuple[bytes, str | None]] = [
        (make_png((250, 0, 0)), "caption \u00e9\n"),
        (b"<html>not an image</html>", None),
        (make_png((0, 0, 250)), None),
    ]
    answers = {}
    for body in ("compact", "json"):
        serving = torchserve.serving.model_copy(update={"request_body": body})
        with ServingClient(serving, key_file=torchserve.key_file) as client:
            answers[body] = client.predict_many(items, request_items=2, max_in_flight=2)
    assert [type(a) for a in answers["compact"]] == [ItemResult, ItemError, ItemResult]
    for compact, listed in zip(answers["compact"], answers["json"], strict=True):
        if isinstance(compact, ItemResult):
            assert isinstance(listed, ItemResult)
            assert compact.p_ai == pytest.approx(listed.p_ai, abs=1e-6)
        else:
            assert compact == listed


def test_concurrent_requests_run_in_server_batches(
    torchserve: Served, make_png: Callable[..., bytes]
) -> None:
    image = make_png((30, 60, 90))
    with ServingClient(torchserve.serving, key_file=torchserve.key_file) as client:
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda _: client.predict([(image, None)])[0], range(16)))
        spread = client.predict_many([(image, None)] * 24, request_items=3, max_in_flight=8)
    sizes = [a.server_batch_size for a in answers + spread if isinstance(a, ItemResult)]
    assert len(sizes) == 40
    assert max(sizes) > 1, f"TorchServe never batched concurrent requests: {sizes}"


def test_bad_items_get_their_own_errors_and_the_rest_is_served(
    torchserve: Served, make_png: Callable[..., bytes], bomb_png: bytes
) -> None:
    good = make_png((120, 120, 0))
    items: list[tuple[bytes, str | None]] = [
        (good, None),
        (b"<html>not an image</html>", None),
        (bomb_png, "huge"),
        (b"", None),
        (good, "x" * 3000),
        (good, "a caption"),
    ]
    with ServingClient(torchserve.serving, key_file=torchserve.key_file) as client:
        results = client.predict_many(items, request_items=4, max_in_flight=2)
    reasons = [r.reason if isinstance(r, ItemError) else "ok" for r in results]
    assert reasons == [
        "ok",
        "undecodable_image",
        "decompression_bomb",
        "empty_image",
        "caption_too_long",
        "ok",
    ]


def test_bad_base64_is_an_item_error_and_a_body_that_is_not_items_a_400(
    torchserve: Served, make_png: Callable[..., bytes]
) -> None:
    url = f"{torchserve.settings.serving.inference_url}/predictions/detector"
    headers = {"Authorization": f"Bearer {_keys(torchserve)['inference']['key']}"}
    good = _b64(make_png((1, 1, 1)))
    with httpx.Client(headers=headers, timeout=30) as http:
        listed = http.post(url, json=[{"image_b64": "@@@"}, {"image_b64": good}])
        not_json = http.post(url, content=b"{oops", headers={"Content-Type": "application/json"})
        not_items = http.post(url, json=[1, 2])
    assert listed.status_code == 200
    assert listed.json()[0]["error"]["reason"] == "bad_base64"
    assert "p_ai" in listed.json()[1]
    assert not_json.status_code == 400
    assert not_json.json()["error"]["reason"] == "not_json"
    assert not_items.status_code == 400
    assert not_items.json()["error"]["reason"] == "not_items"


def test_a_request_the_server_refuses_whole_is_a_request_error(
    torchserve: Served, make_png: Callable[..., bytes]
) -> None:
    items: list[tuple[bytes, str | None]] = [(make_png((9, 9, 9), size=(8, 8)), None)] * 300
    client = ServingClient(torchserve.serving, key_file=torchserve.key_file)
    with client, pytest.raises(ServingRequestError) as caught:
        client.predict(items)  # more items than the archive's max_items_per_request
    assert caught.value.status == 413
    assert "too_many_items" in str(caught.value)


def test_model_info_and_ready(torchserve: Served) -> None:
    with ServingClient(torchserve.serving, key_file=torchserve.key_file) as client:
        assert client.ready() is True
        info = client.model_info()
    assert info == ModelInfo(
        name="detector",
        version="1",
        architecture="fused",
        generators=("real", "sd21", "sdxl", "sd3", "dalle3", "midjourney6"),
        reads_caption=True,
    )


def test_the_client_needs_no_management_api(torchserve: Served) -> None:
    """Workers may be denied TorchServe's management port: the model describes itself on the
    inference port, per version too."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    cut_off = torchserve.serving.model_copy(update={"management_url": f"http://127.0.0.1:{closed}"})
    with ServingClient(cut_off, key_file=torchserve.key_file) as client:
        assert client.ready() is True
        assert client.model_info().version == "1"
        assert client.model_info("1").architecture == "fused"
        with pytest.raises(ServingUnavailable):
            client.model_info("no-such-version")


def test_a_request_without_token_is_rejected(torchserve: Served) -> None:
    serving = torchserve.settings.serving
    with httpx.Client(timeout=10) as http:
        predicted = http.post(f"{serving.inference_url}/predictions/detector", json=[])
        described = http.get(f"{serving.management_url}/models")
    for response in (predicted, described):
        assert response.status_code in (400, 401)
        assert response.json()["type"] == "InvalidKeyException"
    with ServingClient(torchserve.serving) as client:  # no key file, no token
        assert client.ready() is False


def test_the_client_follows_a_renewed_token(
    torchserve: Served, make_png: Callable[..., bytes]
) -> None:
    image = [(make_png((5, 50, 5)), None)]
    serving = torchserve.settings.serving
    with ServingClient(torchserve.serving, key_file=torchserve.key_file) as client:
        assert isinstance(client.predict(image)[0], ItemResult)  # caches the current key
        old = _keys(torchserve)["inference"]["key"]
        renewed = httpx.post(
            f"{serving.management_url}/token",
            params={"type": "inference"},
            headers={"Authorization": f"Bearer {_keys(torchserve)['API']['key']}"},
        )
        assert renewed.status_code == 200
        assert _keys(torchserve)["inference"]["key"] != old  # the cached key is dead now
        assert isinstance(client.predict(image)[0], ItemResult)


def _keys(served: Served) -> dict[str, dict[str, str]]:
    return json.loads(served.key_file.read_text())  # type: ignore[no-any-return]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()

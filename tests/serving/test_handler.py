"""The TorchServe handler in process, with TorchServe's own Context and a tiny exported model."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from serving.torchserve import decoding
from serving.torchserve.decoding import ImageReader
from serving.torchserve.handler import DetectorHandler
from tests.serving.handler_support import body_item, handler_context

pytestmark = pytest.mark.unit


def _png_of(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_one_object_gets_one_object_and_a_list_gets_a_list_in_order(
    serve: Callable[..., tuple[list[Any], list[int]]], make_png: Callable[..., bytes]
) -> None:
    colours = [(250, 20, 20), (20, 250, 20), (20, 20, 250)]
    single, listed = serve(
        body_item(make_png(colours[0]), "red"),
        [body_item(make_png(colour), name) for colour, name in zip(colours, "rgb", strict=True)],
    )[0]
    assert isinstance(single, dict)
    assert single["model_name"] == "detector"
    assert single["model_version"] == "1"
    assert single["server_batch_size"] == 2
    assert set(single["generator_probs"]) == {
        "real",
        "sd21",
        "sdxl",
        "sd3",
        "dalle3",
        "midjourney6",
    }
    assert sum(single["generator_probs"].values()) == pytest.approx(1.0, abs=1e-5)
    assert isinstance(listed, list)
    assert len(listed) == 3
    # Alone, each item scores what it scored inside the list: the list kept its order.
    for colour, name, answer in zip(colours, "rgb", listed, strict=True):
        [[alone]], _ = serve([body_item(make_png(colour), name)])
        assert answer["p_ai"] == pytest.approx(alone["p_ai"], abs=1e-5)


def test_bad_requests_are_refused_whole_and_the_rest_of_the_batch_is_served(
    serve: Callable[..., tuple[list[Any], list[int]]], make_png: Callable[..., bytes]
) -> None:
    good = body_item(make_png((90, 90, 90)))
    answers, statuses = serve(
        good,
        b"{not json",
        42,
        [],
        [good, 7],
        [good] * 300,
        json.dumps([good]).encode(),  # a body TorchServe did not parse (no JSON content type)
    )
    assert statuses == [200, 400, 400, 400, 400, 413, 200]
    reasons = [
        a["error"]["reason"] if isinstance(a, dict) and "error" in a else "ok" for a in answers
    ]
    assert reasons == [
        "ok",
        "not_json",
        "not_items",
        "no_items",
        "not_items",
        "too_many_items",
        "ok",
    ]
    assert "Content-Type: application/json" in answers[1]["error"]["detail"]


def test_each_bad_item_gets_its_own_error(
    serve: Callable[..., tuple[list[Any], list[int]]],
    make_png: Callable[..., bytes],
    bomb_png: bytes,
) -> None:
    good = body_item(make_png((10, 120, 200)), "a photo")
    wrapped = base64.encodebytes(make_png((1, 2, 3))).decode()  # line-wrapped base64 is accepted
    [answers], [status] = serve(
        [
            good,
            {"image_b64": "!!not base64!!"},
            body_item(b"GIF89a but not really"),
            body_item(bomb_png),
            body_item(_png_of(Image.new("RGB", (16_384, 1)))),
            body_item(b""),
            {"image": "typo"},
            {"image_b64": 42},
            body_item(make_png((1, 2, 3)), "x" * 5000),
            {"image_b64": wrapped},
            good,
        ]
    )
    assert status == 200
    reasons = [a["error"]["reason"] if "error" in a else "ok" for a in answers]
    assert reasons == [
        "ok",
        "bad_base64",
        "undecodable_image",
        "decompression_bomb",
        "extreme_aspect_ratio",
        "empty_image",
        "invalid_item",
        "invalid_item",
        "caption_too_long",
        "ok",
        "ok",
    ]
    assert answers[0]["p_ai"] == pytest.approx(answers[-1]["p_ai"], abs=1e-6)


def test_a_single_bad_item_is_answered_422(
    serve: Callable[..., tuple[list[Any], list[int]]],
) -> None:
    [answer], [status] = serve({"image_b64": "%%%"})
    assert status == 422
    assert answer["error"]["reason"] == "bad_base64"


Predict = Callable[[list[Any], list[str | None]], Any]
Serve = Callable[..., tuple[list[Any], list[int]]]


@pytest.fixture
def around_predict(
    handler: DetectorHandler, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Callable[[Predict, list[Any], list[str | None]], Any]], None]:
    """Send the predictor's ``predict`` through ``wrapper(real_predict, images, captions)``."""

    def install(wrapper: Callable[[Predict, list[Any], list[str | None]], Any]) -> None:
        predictor = handler.predictor
        assert predictor is not None
        real = predictor.predict
        monkeypatch.setattr(predictor, "predict", lambda i, c: wrapper(real, i, c))

    return install


@pytest.fixture
def around_decode(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[Callable[..., Any]], None]:
    """Send the handler's decode of an opened image (``decode_opened``) through
    ``wrapper(real_decode, image, **options)`` (on the handler's decoding threads)."""

    def install(wrapper: Callable[..., Any]) -> None:
        real = decoding.decode_opened
        monkeypatch.setattr(
            decoding, "decode_opened", lambda image, **options: wrapper(real, image, **options)
        )

    return install


@pytest.fixture
def passes(around_predict: Callable[..., None]) -> list[list[Any]]:
    """The images of each forward pass, recorded as the handler runs them."""
    seen: list[list[Any]] = []

    def recording(real: Predict, images: list[Any], captions: list[str | None]) -> Any:
        seen.append(list(images))
        return real(images, captions)

    around_predict(recording)
    return seen


def test_items_of_all_requests_run_in_forward_passes_of_bounded_size(
    serve: Serve, handler: DetectorHandler, passes: list[list[Any]], make_png: Callable[..., bytes]
) -> None:
    item = body_item(make_png((5, 5, 5)))
    answers, _ = serve([item] * 3, [item] * 5, item, [item, {"image_b64": "??"}])
    assert [len(a) if isinstance(a, list) else 1 for a in answers] == [3, 5, 1, 2]
    assert handler.settings.max_forward_batch == 4
    # 10 valid items of four requests, in passes of at most 4
    assert [len(images) for images in passes] == [4, 4, 2]


def test_an_item_that_breaks_the_model_fails_alone(
    serve: Serve, around_predict: Callable[..., None], make_png: Callable[..., bytes]
) -> None:
    def fragile(real: Predict, images: list[Any], captions: list[str | None]) -> Any:
        if "poison" in captions:
            raise RuntimeError("shape mismatch")
        return real(images, captions)

    around_predict(fragile)
    image = make_png((200, 100, 0))
    [answers], _ = serve(
        [body_item(image, "fine"), body_item(image, "poison"), body_item(image, "also fine")]
    )
    assert "p_ai" in answers[0]
    assert answers[1]["error"]["reason"] == "unscorable_image"
    assert "server log" in answers[1]["error"]["detail"]
    assert "p_ai" in answers[2]


def test_an_item_out_of_memory_alone_is_unscorable_and_the_others_are_answered(
    serve: Serve,
    around_predict: Callable[..., None],
    around_decode: Callable[..., None],
    make_png: Callable[..., bytes],
) -> None:
    huge = make_png((1, 1, 1), size=(60, 50))

    def decode(real: Callable[..., Any], image: Image.Image, **options: Any) -> Any:
        if image.size == (60, 50):  # the huge one
            raise MemoryError  # this image's decode cannot fit
        return real(image, **options)

    def greedy(real: Predict, images: list[Any], captions: list[str | None]) -> Any:
        if "greedy" in captions:
            raise MemoryError  # neither can this caption's forward pass, in a chunk or alone
        return real(images, captions)

    around_decode(decode)
    around_predict(greedy)
    image = make_png((30, 60, 90))
    [answers], [status] = serve(
        [body_item(image, "a"), body_item(huge), body_item(image, "greedy"), body_item(image, "b")]
    )
    assert status == 200
    reasons = [a["error"]["reason"] if "error" in a else "ok" for a in answers]
    assert reasons == ["ok", "unscorable_image", "unscorable_image", "ok"]
    assert "decode" in answers[1]["error"]["detail"]
    assert "MemoryError" in answers[2]["error"]["detail"]


def test_a_server_out_of_memory_for_any_item_fails_the_batch(
    handler: DetectorHandler,
    model_dir: Path,
    around_predict: Callable[..., None],
    make_png: Callable[..., bytes],
) -> None:
    def exhausted(real: Predict, images: list[Any], captions: list[str | None]) -> Any:
        raise MemoryError  # not even the reference item runs: TorchServe answers 507

    around_predict(exhausted)
    with pytest.raises(MemoryError):
        handler.handle([{"body": [body_item(make_png((9, 9, 9)))] * 2}], handler_context(model_dir))


def test_images_are_decoded_reduced_a_few_ahead_of_their_forward_pass(
    serve: Serve,
    handler: DetectorHandler,
    passes: list[list[Any]],
    around_decode: Callable[..., None],
    make_png: Callable[..., bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[int] = []
    sizes: list[tuple[int, int]] = []

    def decode(real: Callable[..., Any], opened: Image.Image, **options: Any) -> Any:
        started.append(len(passes))
        image = real(opened, **options)
        sizes.append(image.size)
        return image

    around_decode(decode)
    reader = handler.reader
    assert reader is not None
    threads = 2  # few enough that the bound below says something of 10 items in passes of 4
    monkeypatch.setattr(handler, "reader", ImageReader(reader.target_side, threads, reader.prepare))
    large = _png_of(Image.new("RGB", (6300, 6300), (80, 160, 240)))  # 151 MiB if decoded whole
    small = make_png((5, 5, 5), size=(40, 30))
    answers, _ = serve([body_item(large)] + [body_item(small)] * 5, [body_item(small)] * 4)
    assert all("p_ai" in answer for request in answers for answer in request)
    assert sorted(sizes) == [(40, 30)] * 9 + [(450, 450)]
    # Forward passes hold 8-bit crops of the model's input size, made on the decoding threads.
    assert [[tuple(crop.shape) for crop in images] for images in passes] == [
        [(3, 224, 224)] * 4,
        [(3, 224, 224)] * 4,
        [(3, 224, 224)] * 2,
    ]
    # The i-th image starts decoding only once the pass of image i - 1 - threads has run:
    # the reader runs at most `threads` images ahead of the one the handler holds.
    size = handler.settings.max_forward_batch
    assert len(started) == 10
    assert all(done >= max(0, (i - threads - 1) // size) for i, done in enumerate(started))
    chunks = handler.batch(handler.decode({"body": [body_item(small)] * 6}, {}).items)
    first = next(chunks)
    assert all(item.image is not None for item in first)
    next(chunks)
    assert all(item.image is None and item.data is None for item in first)


def test_a_pass_closes_early_rather_than_hold_more_than_the_budget(
    serve: Serve,
    handler: DetectorHandler,
    passes: list[list[Any]],
    make_png: Callable[..., bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handler, "settings", replace(handler.settings, max_batch_decoded_mb=1))
    # A model whose own processor runs holds decoded images rather than crops.
    monkeypatch.setattr(handler.reader, "prepare", lambda image: image)
    decoded = handler.predictor.config.preprocess.decode_side  # type: ignore[union-attr]
    big = make_png((70, 70, 70), size=(decoded, decoded))  # 0.57 MiB decoded: two pass 1 MiB
    small = make_png((7, 7, 7))
    [answers], _ = serve(
        [body_item(big), body_item(small), body_item(big), body_item(big), body_item(small)]
    )
    assert all("p_ai" in answer for answer in answers)
    assert [len(images) for images in passes] == [2, 1, 2]


def test_describe_names_the_served_model(handler: DetectorHandler, model_dir: Path) -> None:
    context = handler_context(model_dir, headers={"describe": "True"})
    [answer] = handler.handle([{"body": None}], context)
    described = json.loads(answer)
    assert described["name"] == "detector"
    assert described["version"] == "1"
    assert described["architecture"] == "fused"
    assert described["generators"][0] == "real"
    assert described["reads_caption"] is True
    assert described["checkpoint"] == {"name": "tiny-fused", "version": "1"}


def test_a_describe_request_on_the_inference_path_is_answered_beside_scored_items(
    handler: DetectorHandler, model_dir: Path, make_png: Callable[..., bytes]
) -> None:
    rows = [
        {"body": {"describe": True}},
        {"body": body_item(make_png((1, 2, 3)))},
        {"body": {"describe": "yes"}},  # not the describe request: an item with unknown fields
        {"body": {"describe": True, "image_b64": "AAAA"}},
    ]
    described, scored, odd, mixed = handler.handle(rows, handler_context(model_dir, rows=len(rows)))
    assert json.loads(described)["version"] == "1"
    assert json.loads(described)["reads_caption"] is True
    assert "p_ai" in json.loads(scored)
    assert json.loads(odd)["error"]["reason"] == "invalid_item"
    assert json.loads(mixed)["error"]["reason"] == "invalid_item"


def test_the_handler_refuses_to_serve_before_it_is_loaded(
    model_dir: Path, make_png: Callable[..., bytes]
) -> None:
    with pytest.raises(RuntimeError, match="before initialize"):
        DetectorHandler().handle(
            [{"body": body_item(make_png((0, 0, 0)))}], handler_context(model_dir)
        )


def test_with_the_watermark_setting_an_answer_carries_the_watermark_it_found(
    handler: DetectorHandler,
    serve: Callable[..., tuple[list[Any], list[int]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aigis.samples import photo
    from serving.torchserve.watermark import embed_sdxl_watermark

    image = photo(8, (512, 512))
    marked, plain = _png_of(embed_sdxl_watermark(image)), _png_of(image)
    [answer], _ = serve([body_item(marked)])
    assert "evidence" not in answer[0]  # off unless the archive asks for it
    monkeypatch.setattr(handler, "settings", replace(handler.settings, watermark=True))
    [answers], _ = serve([body_item(marked), body_item(plain)])
    assert [a.get("evidence") for a in answers] == [
        [
            {
                "kind": "sd_watermark",
                "value": "SDXL invisible watermark, 48 of 48 bits",
                "generator": "sdxl",
                "strength": "claimed",
            }
        ],
        None,
    ]

"""The request bodies the handler reads besides a JSON list of items (the compact body, an image
sent as it is, a form), and hostile bodies of every kind: each fails alone, never its batch."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ts.context import RequestProcessor

from serving.client import wire
from serving.torchserve.handler import DetectorHandler
from tests.serving.handler_support import body_item, handler_context

pytestmark = pytest.mark.unit

Serve = Callable[..., tuple[list[Any], list[int]]]


def test_a_compact_body_is_answered_like_the_same_items_in_json(
    serve: Callable[..., tuple[list[Any], list[int]]], make_png: Callable[..., bytes]
) -> None:
    items: list[tuple[bytes, str | None]] = [
        (make_png((200, 10, 10)), "red"),
        (b"GIF89a but not really", None),
        (make_png((10, 10, 200)), None),
        (make_png((1, 2, 3)), "x" * 5000),
    ]
    [compact, listed], statuses = serve(
        wire.compact_body(items), [body_item(image, caption) for image, caption in items]
    )
    assert statuses == [200, 200]
    reasons = [a["error"]["reason"] if "error" in a else "ok" for a in compact]
    assert reasons == ["ok", "undecodable_image", "ok", "caption_too_long"]
    for sent, json_answer in zip(compact, listed, strict=True):
        assert sent.get("p_ai") == pytest.approx(json_answer.get("p_ai"), abs=1e-6)


def test_a_compact_body_that_does_not_frame_its_items_is_refused_alone(
    serve: Callable[..., tuple[list[Any], list[int]]], make_png: Callable[..., bytes]
) -> None:
    image = make_png((90, 90, 90))
    good = wire.compact_body([(image, "fine")])
    answers, statuses = serve(
        good[:-1],  # truncated
        good + b"trailing",
        wire.COMPACT_MAGIC + b"not json\n",
        wire.compact_body([(image, None)] * 300),
        good,
    )
    assert statuses == [400, 400, 400, 413, 200]
    reasons = [a["error"]["reason"] for a in answers[:4]]
    assert reasons == ["bad_compact_body", "bad_compact_body", "bad_compact_body", "too_many_items"]
    assert "p_ai" in answers[4][0]


def test_an_image_sent_as_it_is_is_scored_with_its_caption_from_a_header_or_the_form(
    handler: DetectorHandler,
    model_dir: Path,
    serve: Callable[..., tuple[list[Any], list[int]]],
    make_png: Callable[..., bytes],
) -> None:
    """``curl -T kitten.jpg`` (the whole body), ``curl -F data=@kitten.jpg -F caption=...`` (a
    form), the caption of a raw body in ``X-Caption``, percent-encoded."""
    image = make_png((200, 30, 60))
    caption = "un chat \u00e9tonn\u00e9 <b>"
    [[expected], [uncaptioned]], _ = serve([body_item(image, caption)], [body_item(image)])
    rows = [
        {"body": bytearray(image)},
        {"body": bytearray(image)},
        {"data": bytearray(image), "caption": caption.encode()},
        {"data": bytearray(image), "caption": caption},
        {"body": b"GIF89a but not really"},
        {"body": bytearray(image)},
        {"data": bytearray(image), "caption": b"\xff\xfe"},
        {"body": bytearray(b"\x89PNG" + bytes(handler.settings.max_image_bytes))},
    ]
    context = handler_context(model_dir, rows=len(rows))
    headers = [{}, {"x-caption": "un%20chat%20%C3%A9tonn%C3%A9%20%3Cb%3E"}, {}, {}, {}]
    headers += [{"X-Caption": "%FF"}, {}, {}]
    for index, sent in enumerate(headers):
        context.request_processor[index] = RequestProcessor(sent)
    answers = [json.loads(a) for a in handler.handle(rows, context)]
    reasons = [a["error"]["reason"] if "error" in a else "ok" for a in answers]
    assert reasons == ["ok"] * 4 + [
        "undecodable_image",
        "invalid_item",
        "invalid_item",
        "image_too_large",
    ]
    assert answers[0]["p_ai"] == pytest.approx(uncaptioned["p_ai"], abs=1e-5)
    for answer in answers[1:4]:
        assert answer["p_ai"] == pytest.approx(expected["p_ai"], abs=1e-5)


def test_hostile_bodies_fail_alone_and_the_batch_is_served(
    serve: Serve, make_png: Callable[..., bytes]
) -> None:
    image = make_png((40, 80, 120))
    nines = "9" * 4300  # json reads it; its sum has more digits than int() prints
    huge_sizes = (
        wire.COMPACT_MAGIC + f'{{"items":[{{"size":{nines}}},{{"size":{nines}}}]}}\n'.encode()
    )
    empty_items = wire.COMPACT_MAGIC + b'{"items":[' + b"{}," * 400_000 + b"{}]}\n"
    surrogate = json.dumps({"items": [{"size": len(image), "caption": "\ud800"}]}).encode()
    answers, statuses = serve(
        huge_sizes + b"x",
        b"[" + b"1" * 5000 + b"]",  # a number json cannot read
        b"[" * 200_000,  # nesting deeper than the parser's recursion
        [{"image_b64": "\u00e9t\u00e9"}],  # not ASCII: no base64
        [body_item(image, "\ud800")],  # a lone surrogate, no text a tokenizer reads
        wire.COMPACT_MAGIC + surrogate + b"\n" + image,
        empty_items,  # a header far longer than its item limit needs
        '{"image_b64": "x"}'.encode("utf-16-le"),  # JSON, but not UTF-8
        [body_item(image)],
    )
    assert statuses[:4] == [400, 400, 400, 200]
    assert [a["error"]["reason"] for a in answers[:3]] == [
        "bad_compact_body",
        "not_json",
        "not_json",
    ]
    assert len(answers[0]["error"]["detail"]) < 200  # the number is not echoed
    assert answers[3][0]["error"]["reason"] == "bad_base64"
    assert answers[4][0]["error"]["reason"] == "invalid_item"
    assert answers[5][0]["error"]["reason"] == "invalid_item"
    assert (statuses[6], answers[6]["error"]["reason"]) == (413, "too_many_items")
    assert (statuses[7], answers[7]["error"]["reason"]) == (400, "not_json")
    assert statuses[8] == 200
    assert "p_ai" in answers[8][0]


def test_a_describe_header_answers_only_a_request_alone(
    handler: DetectorHandler, model_dir: Path, make_png: Callable[..., bytes]
) -> None:
    """TorchServe's management API asks with the header; a client sending it in a batch of
    several gets its items scored, so the batch keeps one answer per request."""
    rows = [{"body": [body_item(make_png((9, 9, 9)))]} for _ in range(2)]
    context = handler_context(model_dir, rows=2, headers={"describe": "True"})
    answers = [json.loads(a) for a in handler.handle(rows, context)]
    assert [("p_ai" in a[0]) for a in answers] == [True, True]
    alone = handler_context(model_dir, rows=1, headers={"describe": "True"})
    assert "generators" in json.loads(handler.handle(rows[:1], alone)[0])


def test_a_form_field_listed_among_the_headers_is_no_caption(
    handler: DetectorHandler, model_dir: Path, make_png: Callable[..., bytes]
) -> None:
    """TorchServe lists a form's fields among a request's headers, as dicts
    (``curl -F data=@x.png -F x-caption=hi``)."""
    context = handler_context(model_dir, rows=1)
    context.request_processor[0] = RequestProcessor({"x-caption": {"filename": None}})  # type: ignore[dict-item]
    [answer] = handler.handle([{"data": bytearray(make_png((5, 6, 7)))}], context)
    assert "p_ai" in json.loads(answer)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.large_base_example],
)
@given(
    st.one_of(
        st.binary(min_size=9_000, max_size=20_000),
        st.binary(max_size=2_000).map(lambda tail: wire.COMPACT_MAGIC + tail),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
            lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        ),
    )
)
def test_no_body_fails_the_batch(serve: Serve, body: Any) -> None:
    _, statuses = serve(body, [{"image_b64": ""}])
    assert statuses[1] in (200, 422)
    assert statuses[0] in (200, 400, 413, 422)

"""The handler's first step: one request of a server batch into items, or a refusal.

A request body is one item object or a list of them, or the compact body of several items (both
:mod:`serving.client.wire`), or, the way
TorchServe's image examples are called, an image file as it is: the whole body (``curl -T
kitten.jpg`` or ``--data-binary @kitten.jpg``) or a form's ``data`` file field (``curl -F
data=@kitten.jpg``). Such a request is one item, its caption from the form's ``caption`` field or
the ``X-Caption`` header (UTF-8, percent-encoded where it is not ASCII). A body is read as JSON
when its first byte that is not white space is ``{`` or ``[`` (no image format starts so).

Each item carries its own outcome: its image bytes and caption until it is decoded, then its
image, then a result or an error. Images are not decoded here: the handler decodes them a
forward pass at a time, within its memory budget.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from serving.client import wire

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from serving.client.prediction import Prediction

__all__ = ["CAPTION_HEADER", "Item", "Refused", "Request", "read_request"]

CAPTION_HEADER = "X-Caption"
"""The caption of an image sent as the whole body."""


class Refused(Exception):  # noqa: N818 (flow control inside the handler, never escapes it)
    """A whole request is refused with ``status``."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        self.status = status
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


@dataclass
class Item:
    """One item and where it stands; the next step takes the items whose ``error`` is None."""

    caption: str | None = None
    data: bytes | None = None
    """The encoded image, until it is decoded."""
    image: Image.Image | torch.Tensor | None = None
    """The decoded image (as the model's ``prepare`` left it: a crop), while its forward pass is
    formed and run."""
    error: dict[str, str] | None = None
    result: Prediction | None = None
    signals: list[dict[str, str | None]] = field(default_factory=list)
    """Evidence read from the pixels (:mod:`serving.torchserve.watermark`), sent with the result."""

    def fail(self, reason: str, detail: str) -> None:
        """Give up on this item with ``reason``; whatever it held is released."""
        self.data = self.image = None
        self.error = {"reason": reason, "detail": detail}


@dataclass
class Request:
    """The items of one request in order, or why the request is refused whole."""

    items: list[Item] = field(default_factory=list)
    single: bool = False
    """The body was one object, not a list: answer with one object."""
    refused: Refused | None = None
    describe: bool = False
    """The body was ``{"describe": true}``: answer with the model's description."""


def read_request(
    row: dict[str, Any],
    *,
    max_items: int,
    max_image_bytes: int,
    headers: dict[str, str] | None = None,
) -> Request:
    """Parse one request of the batch into items; refuse it whole if it is not item-shaped.

    ``headers``: the request's HTTP headers, where a raw image's caption may be.
    """
    try:
        compact = _compact(row)
        if compact is not None:
            return _compact_request(compact, max_items, max_image_bytes)
        raw_image = _raw_image(row)
        if raw_image is not None:
            item = _image_item(raw_image, row, headers or {}, max_image_bytes)
            return Request(items=[item], single=True)
        body = _body(row)
        if wire.is_describe(body):
            return Request(describe=True)
        single = isinstance(body, dict)
        raw_items = [body] if single else body
        if not isinstance(raw_items, list):
            raise Refused(
                400,
                "not_items",
                f"the body is JSON {type(body).__name__}; send an item object "
                '{"image_b64": ..., "caption": ...} or a list of them',
            )
        if not raw_items:
            raise Refused(400, "no_items", "the list of items is empty; send at least one")
        if len(raw_items) > max_items:
            raise Refused(
                413,
                "too_many_items",
                f"{len(raw_items)} items in one request, over the limit of {max_items}; "
                "split the list",
            )
        for position, raw in enumerate(raw_items):
            if not isinstance(raw, dict):
                raise Refused(
                    400, "not_items", f"item {position} is JSON {type(raw).__name__}, not an object"
                )
    except Refused as refused:
        return Request(refused=refused)
    except Exception as exc:  # a body nothing above foresaw fails itself, never the batch
        log.warning("request refused by an unexpected error", exc_info=True)
        return Request(refused=Refused(400, "bad_request", f"unreadable ({type(exc).__name__})"))
    return Request(items=[_read_item(raw, max_image_bytes) for raw in raw_items], single=single)


def _payload(row: dict[str, Any]) -> Any:
    """What the request carries: ``body`` (a raw body), else ``data`` (a form's file field)."""
    body = row.get("body")
    return row.get("data") if body is None else body


def _compact(row: dict[str, Any]) -> bytes | bytearray | None:
    """The body when it is a compact body of items."""
    body = _payload(row)
    return body if isinstance(body, bytes | bytearray) and wire.is_compact(body) else None


def _compact_request(body: bytes | bytearray, max_items: int, max_image_bytes: int) -> Request:
    try:
        framed = wire.read_compact(body, max_items=max_items)
    except wire.WireError as exc:
        status = 413 if exc.reason == "too_many_items" else 400
        raise Refused(status, exc.reason, exc.detail) from None
    read = partial(wire.read_compact_item, max_image_bytes=max_image_bytes)
    return Request(items=[_checked(partial(read, header, image)) for header, image in framed])


def _raw_image(row: dict[str, Any]) -> bytes | None:
    """The body's bytes when they are not JSON: an image file sent as it is."""
    body = _payload(row)
    if not isinstance(body, bytes | bytearray) or not body:
        return None
    if body[:64].lstrip()[:1] in (b"{", b"["):  # no copy of a large image to look
        return None
    return bytes(body)


def _image_item(
    data: bytes, row: dict[str, Any], headers: dict[str, str], max_image_bytes: int
) -> Item:
    """One item from an image sent as it is, with its caption from the form or a header."""
    item = Item()
    if len(data) > max_image_bytes:
        item.fail(
            "image_too_large",
            f"the image is {len(data)} bytes, over the limit of {max_image_bytes}; "
            "send a smaller one",
        )
        return item
    try:
        caption = wire.read_caption(_form_caption(row) or _header_caption(headers))
    except wire.WireError as exc:
        item.fail(exc.reason, exc.detail)
        return item
    except UnicodeDecodeError:
        item.fail("invalid_item", f"the caption (form field or {CAPTION_HEADER}) is not UTF-8")
        return item
    return Item(caption=caption, data=data)


def _form_caption(row: dict[str, Any]) -> str | None:
    caption = row.get("caption")
    if isinstance(caption, bytes | bytearray):
        return bytes(caption).decode("utf-8")
    return caption if isinstance(caption, str) else None


def _header_caption(headers: dict[str, str]) -> str | None:
    wanted = CAPTION_HEADER.lower()
    header = next((v for k, v in headers.items() if str(k).lower() == wanted), None)
    # TorchServe also lists form fields here, as dicts: only a real header is read.
    return urllib.parse.unquote(header, errors="strict") if isinstance(header, str) else None


def _read_item(raw: dict[str, Any], max_image_bytes: int) -> Item:
    return _checked(partial(wire.read_item, raw, max_image_bytes=max_image_bytes))


def _checked(read: Callable[[], tuple[bytes, str | None]]) -> Item:
    """The item ``read`` returns, or a failed one with the WireError it raised."""
    item = Item()
    try:
        data, caption = read()
    except wire.WireError as exc:
        item.fail(exc.reason, exc.detail)
        return item
    except Exception as exc:  # an item nothing above foresaw fails itself, never the batch
        log.warning("item refused by an unexpected error", exc_info=True)
        item.fail("invalid_item", f"unreadable ({type(exc).__name__})")
        return item
    return Item(caption=caption, data=data)


def _body(row: dict[str, Any]) -> Any:
    body = _payload(row)
    # TorchServe parses application/json bodies itself; anything else arrives as bytes or text.
    if isinstance(body, bytes | bytearray | str):
        try:
            text = body if isinstance(body, str) else bytes(body).decode("utf-8")
            return json.loads(text)
        except (ValueError, RecursionError) as exc:  # not UTF-8 or JSON, huge numbers, nesting
            raise Refused(
                400,
                "not_json",
                f"the request body is not UTF-8 JSON ({exc}); send a JSON "
                "object or list with Content-Type: application/json",
            ) from None
    if body is None:
        raise Refused(
            400,
            "not_json",
            "the request has no JSON body; send a JSON object or list with "
            "Content-Type: application/json",
        )
    return body

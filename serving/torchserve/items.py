"""The handler's first step: one request of a server batch into items, or a refusal.

A request body is one item object or a list of them (:mod:`serving.client.wire`). Each item
carries its own outcome: its image bytes and caption until it is decoded, then its image, then a
result or an error. Images are not decoded here: the handler decodes them a forward pass at a
time, within its memory budget.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from serving.client import wire

if TYPE_CHECKING:
    from PIL import Image

    from serving.client.prediction import Prediction

__all__ = ["Item", "Refused", "Request", "read_request"]


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
    image: Image.Image | None = None
    """The decoded image, while its forward pass is formed and run."""
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


def read_request(row: dict[str, Any], *, max_items: int, max_image_bytes: int) -> Request:
    """Parse one request of the batch into items; refuse it whole if it is not item-shaped."""
    try:
        body = _body(row)
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
    return Request(items=[_read_item(raw, max_image_bytes) for raw in raw_items], single=single)


def _read_item(raw: dict[str, Any], max_image_bytes: int) -> Item:
    try:
        data, caption = wire.read_item(raw, max_image_bytes=max_image_bytes)
    except wire.WireError as exc:
        item = Item()
        item.fail(exc.reason, exc.detail)
        return item
    return Item(caption=caption, data=data)


def _body(row: dict[str, Any]) -> Any:
    body = row.get("body")
    if body is None:
        body = row.get("data")
    # TorchServe parses application/json bodies itself; anything else arrives as bytes or text.
    if isinstance(body, bytes | bytearray | str):
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
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

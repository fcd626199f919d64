"""The wire format between the worker's client and the model server's handler, defined once.

A request body is one item object or a list of them: ``{"image_b64": "...", "caption": "..."}``,
the caption optional; or the compact body of several items, the images' own bytes without base64
(:func:`compact_body`): :data:`COMPACT_MAGIC`, one line of JSON ``{"items": [{"size": n,
"caption": "..."}, ...]}`` and the images one after another, each ``size`` bytes. The answer
is one entry per item, in order: the scores and which model gave them, or ``{"error":
{"reason": ..., "detail": ...}}``. A refused request answers with one error object. Torch-free:
the client and the handler both import it, and a test feeds one side's output to the other.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from schemas.limits import MAX_CAPTION_CHARS
from serving.client.prediction import Prediction

ITEM_KEYS: Final[frozenset[str]] = frozenset({"image_b64", "caption"})
SIGNAL_KEYS: Final[tuple[str, ...]] = ("kind", "value", "generator", "strength")
MAX_SIGNALS: Final[int] = 8
"""Signals of one answer read; more are dropped."""
COMPACT_MAGIC: Final[bytes] = b"AIGIS-ITEMS/1\n"
"""The first bytes of a compact body (no image format starts so, nor does JSON)."""
COMPACT_CONTENT_TYPE: Final[str] = "application/x-aigis-items"
COMPACT_ITEM_KEYS: Final[frozenset[str]] = frozenset({"size", "caption"})
MAX_HEADER_BYTES_PER_ITEM: Final[int] = 6 * MAX_CAPTION_CHARS + 64
"""Most header-line bytes one item can need (every caption character escaped as \\uXXXX): a
longer header line is refused before it is parsed, so its size bounds the memory parsing takes."""
DESCRIBE_REQUEST: Final[bytes] = b'{"describe":true}'
"""The body of a request the handler answers with its own description (name, version,
architecture, generators, whether it reads captions) instead of scores: how the worker learns
about the model on the inference port, without the management API."""


def is_describe(body: Any) -> bool:
    """Whether a parsed request body is :data:`DESCRIBE_REQUEST`."""
    return isinstance(body, dict) and body == {"describe": True}


@dataclass(frozen=True)
class ItemResult(Prediction):
    """The model's answer for one item: its Prediction and which model gave it, in what batch."""

    model_name: str
    model_version: str
    server_batch_size: int
    """How many requests TorchServe batched together with this item's request."""
    signals: tuple[dict[str, str | None], ...] = ()
    """Evidence the server read from the pixels (the invisible watermark), each
    ``{kind, value, generator, strength}``; the answer's optional ``evidence`` list."""


@dataclass(frozen=True)
class ItemError:
    """Why one item could not be scored; ``reason`` is a stable code fit for a metric label."""

    reason: str
    detail: str


class WireError(ValueError):
    """One item (or answer) does not follow the wire format; ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


# -- requests ------------------------------------------------------------------------------------


def item_json(image: bytes, caption: str | None) -> dict[str, str]:
    """One item of a request body."""
    item = {"image_b64": base64.b64encode(image).decode("ascii")}
    if caption is not None:
        item["caption"] = caption
    return item


def read_item(raw: dict[str, Any], *, max_image_bytes: int) -> tuple[bytes, str | None]:
    """The image bytes and caption of one request item; WireError when it is not one."""
    unknown = sorted(set(raw) - ITEM_KEYS)
    encoded = raw.get("image_b64")
    caption = raw.get("caption")
    if unknown:
        raise WireError(
            "invalid_item",
            f"unknown field(s) {', '.join(unknown)}; send image_b64 and optionally caption",
        )
    if not isinstance(encoded, str):
        raise WireError(
            "invalid_item", "image_b64 is missing; send the image file's bytes in base64"
        )
    caption = read_caption(caption)
    # Refuse oversized images before decoding the base64: it would cost the memory anyway.
    if len(encoded) // 4 * 3 > max_image_bytes + 3:
        raise WireError(
            "image_too_large",
            f"the image is about {len(encoded) // 4 * 3} bytes, over the limit of "
            f"{max_image_bytes}; send a smaller one",
        )
    try:
        return _b64decode(encoded), caption
    except ValueError as exc:  # binascii.Error, or a string that is not ASCII
        raise WireError(
            "bad_base64",
            f"image_b64 is not valid base64 ({exc}); encode the image file's bytes with standard "
            "base64",
        ) from None


def read_caption(caption: Any) -> str | None:
    """A request item's caption: None, or a string within the length limit; else WireError."""
    if caption is None:
        return None
    if not isinstance(caption, str):
        raise WireError(
            "invalid_item",
            f"caption is JSON {type(caption).__name__}; send a string or leave it out",
        )
    if len(caption) > MAX_CAPTION_CHARS:
        raise WireError(
            "caption_too_long",
            f"the caption has {len(caption)} characters, over the limit of {MAX_CAPTION_CHARS}; "
            "shorten it",
        )
    if not caption.isascii():
        try:  # a lone surrogate (a JSON escape such as "\ud800") is no text a tokenizer reads
            caption.encode("utf-8")
        except UnicodeEncodeError:
            raise WireError("invalid_item", "the caption is not valid Unicode text") from None
    return caption


def compact_body(items: Sequence[tuple[bytes, str | None]]) -> bytes:
    """The compact body of ``items``: their images as they are, no base64, no JSON around them."""
    header = [
        {"size": len(image)} if caption is None else {"size": len(image), "caption": caption}
        for image, caption in items
    ]
    images = [image for image, _ in items]
    return b"".join([COMPACT_MAGIC, dumps({"items": header}).encode(), b"\n", *images])


def is_compact(body: bytes | bytearray) -> bool:
    """Whether ``body`` is a compact body (:func:`compact_body`)."""
    return body[: len(COMPACT_MAGIC)] == COMPACT_MAGIC


def read_compact(body: bytes | bytearray, *, max_items: int) -> list[tuple[dict[str, Any], bytes]]:
    """The items of a compact body: each one's header entry and image bytes. WireError
    (``bad_compact_body``, ``no_items`` or ``too_many_items``) when the body does not frame its
    items; the items' own fields are checked by :func:`read_compact_item`."""
    start = len(COMPACT_MAGIC)
    end = body.find(b"\n", start)
    if not is_compact(body) or end < 0:
        raise WireError("bad_compact_body", "the compact body has no header line after its magic")
    if end - start > max_items * MAX_HEADER_BYTES_PER_ITEM:  # refused before it is parsed
        raise WireError(
            "too_many_items",
            f"the header line has {end - start} bytes, more than {max_items} items need; "
            "split the list",
        )
    try:
        header = json.loads(bytes(body[start:end]).decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # not UTF-8 or JSON, a huge number, deep nesting
        raise WireError(
            "bad_compact_body", f"the header line is not UTF-8 JSON ({type(exc).__name__})"
        ) from None
    items = header.get("items") if isinstance(header, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise WireError("bad_compact_body", 'the header line is not {"items": [{"size": ...}]}')
    if not items:
        raise WireError("no_items", "the list of items is empty; send at least one")
    if len(items) > max_items:
        raise WireError(
            "too_many_items",
            f"{len(items)} items in one request, over the limit of {max_items}; split the list",
        )
    sizes = [i.get("size") for i in items]
    position = end + 1
    if not all(type(n) is int and 0 <= n <= len(body) for n in sizes):
        raise WireError(
            "bad_compact_body", "each item's size must be a whole number of bytes, within the body"
        )
    if position + sum(sizes) != len(body):
        raise WireError(
            "bad_compact_body",
            f"the items' sizes do not add up to the {len(body) - position} bytes that follow "
            "the header line",
        )
    framed = []
    for item, size in zip(items, sizes, strict=True):
        framed.append((item, bytes(body[position : position + size])))
        position += size
    return framed


def read_compact_item(
    item: dict[str, Any], image: bytes, *, max_image_bytes: int
) -> tuple[bytes, str | None]:
    """The image bytes and caption of one framed compact item; WireError when it is not one."""
    unknown = sorted(set(item) - COMPACT_ITEM_KEYS)
    if unknown:
        raise WireError(
            "invalid_item", f"unknown field(s) {', '.join(unknown)}; send size and caption"
        )
    caption = read_caption(item.get("caption"))
    if len(image) > max_image_bytes:
        raise WireError(
            "image_too_large",
            f"the image is {len(image)} bytes, over the limit of {max_image_bytes}; "
            "send a smaller one",
        )
    return image, caption


def _b64decode(encoded: str) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        # Tolerate line-wrapped base64 (what the `base64` tool writes without -w0).
        return base64.b64decode("".join(encoded.split()), validate=True)


# -- answers -------------------------------------------------------------------------------------


def result_json(
    prediction: Prediction,
    *,
    model_name: str,
    model_version: str,
    server_batch_size: int,
    signals: Sequence[dict[str, str | None]] = (),
) -> dict[str, Any]:
    """One answer entry for a scored item (with ``evidence`` only when there are signals)."""
    entry: dict[str, Any] = {
        "p_ai": prediction.p_ai,
        "decision": prediction.decision,
        "generator": prediction.generator,
        "generator_probs": prediction.generator_probs,
        "confidence_a": prediction.confidence_a,
        "confidence_b": prediction.confidence_b,
        "model_name": model_name,
        "model_version": model_version,
        "server_batch_size": server_batch_size,
    }
    if signals:
        entry["evidence"] = list(signals)
    return entry


def error_json(reason: str, detail: str) -> dict[str, dict[str, str]]:
    """One answer entry (or a whole refused request's body) for an item that was not scored."""
    return {"error": {"reason": reason, "detail": detail}}


def read_answer(entry: Any) -> ItemResult | ItemError:
    """One answer entry; raises ValueError, LookupError or TypeError when it is not one."""
    if "error" in entry:
        error = entry["error"]
        return ItemError(reason=str(error["reason"]), detail=str(error["detail"]))
    return ItemResult(
        p_ai=float(entry["p_ai"]),
        decision=str(entry["decision"]),
        generator=str(entry["generator"]),
        generator_probs={str(k): float(v) for k, v in entry["generator_probs"].items()},
        confidence_a=float(entry["confidence_a"]),
        confidence_b=float(entry["confidence_b"]),
        model_name=str(entry["model_name"]),
        model_version=str(entry["model_version"]),
        server_batch_size=int(entry["server_batch_size"]),
        signals=tuple(_signal(s) for s in entry.get("evidence", ())[:MAX_SIGNALS]),
    )


def _signal(value: Any) -> dict[str, str | None]:
    return {key: None if value.get(key) is None else str(value[key]) for key in SIGNAL_KEYS}


def dumps(value: Any) -> str:
    """Compact JSON, as every body on the wire is written."""
    return json.dumps(value, separators=(",", ":"))

"""JSON-bytes encoding of messages, and decoding that turns every failure into a SchemaError.

Decoding is bounded before and while it parses: the size of the message, the nesting of its
objects and arrays (:data:`~schemas.limits.MAX_JSON_DEPTH`), and numbers (no NaN or Infinity;
Python's own limit on the digits of an integer). Whatever the bytes, ``decode`` returns a message
or raises SchemaError, nothing else.
"""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from schemas.errors import SchemaError
from schemas.limits import MAX_DLQ_MESSAGE_BYTES, MAX_JSON_DEPTH
from schemas.messages import SCHEMA_VERSION, SCHEMA_VERSIONS, Message

M = TypeVar("M", bound=BaseModel)


def encode(message: BaseModel, version: int = SCHEMA_VERSION) -> bytes:
    """Compact UTF-8 JSON of ``message`` as message ``version`` (1 leaves out the fields that
    version 2 added)."""
    if version not in SCHEMA_VERSIONS:
        raise ValueError(f"message version {version} is not one of {SCHEMA_VERSIONS}")
    if isinstance(message, Message) and version != message.schema_version:
        message = as_version(message, version)
    return message.model_dump_json(exclude_none=True).encode("utf-8")


def as_version(message: Message, version: int) -> Message:
    """``message`` (and every message inside it) as ``version``."""
    update: dict[str, object] = {"schema_version": version}
    if version == 1:
        update.update(dict.fromkeys(message.V2_FIELDS))
    for name in type(message).model_fields:
        value = getattr(message, name)
        if isinstance(value, Message) and name not in update:
            update[name] = as_version(value, version)
    return message.model_copy(update=update)


def decode(model: type[M], data: bytes | str) -> M:
    """Parse ``data`` as a ``model``; raise SchemaError with a DLQ-ready reason on any failure."""
    if len(data) > MAX_DLQ_MESSAGE_BYTES:
        raise SchemaError(
            "message_too_large",
            f"message is {len(data)} bytes, over the {MAX_DLQ_MESSAGE_BYTES} byte limit",
        )
    try:
        obj = json.loads(data, parse_constant=_no_constants)
    except RecursionError:
        raise SchemaError("too_deep", _TOO_DEEP) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of too many digits
        raise SchemaError("not_json", f"message is not UTF-8 JSON ({_short(exc)})") from None
    if _depth(obj) > MAX_JSON_DEPTH:
        raise SchemaError("too_deep", _TOO_DEEP)
    if not isinstance(obj, dict):
        raise SchemaError("not_an_object", f"message is JSON {type(obj).__name__}, not an object")
    # A message without a version is read as version 1, the only one there was before.
    version = obj.setdefault("schema_version", 1)
    # bool is an int in Python: `true` must not pass for version 1.
    if type(version) is not int or version not in SCHEMA_VERSIONS:
        raise SchemaError(
            "unsupported_schema_version",
            f"schema_version {version!r} is not supported; this worker reads "
            f"{' and '.join(map(str, SCHEMA_VERSIONS))}",
            field="schema_version",
        )
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise schema_error(exc) from None


_TOO_DEEP = f"message nests objects or arrays deeper than {MAX_JSON_DEPTH} levels"


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _short(exc: Exception) -> str:
    return str(exc)[:200]


def _depth(obj: object) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), counted no further than one past
    the limit."""
    depth, level = 0, [obj]
    while depth <= MAX_JSON_DEPTH:
        containers = [v for v in level if isinstance(v, dict | list)]
        if not containers:
            break
        depth += 1
        level = [c for v in containers for c in (v.values() if isinstance(v, dict) else v)]
    return depth


def schema_error(exc: ValidationError) -> SchemaError:
    """The first problem of a pydantic ``ValidationError`` as a DLQ-ready SchemaError."""
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        reason = "missing_field"
    elif first["type"] == "extra_forbidden":
        reason = "unknown_field"
    elif field == "image_b64" and "base64" in message:
        reason = "bad_base64"
    elif field == "image_b64" and ("byte limit" in message or "exceeds" in message):
        reason = "image_too_large"
    else:
        reason = "invalid_field"
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return SchemaError(reason, f"{message}{suffix}", field=field)

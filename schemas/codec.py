"""JSON-bytes encoding of messages, and decoding that turns every failure into a SchemaError."""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from schemas.errors import SchemaError
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
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError("not_json", f"message is not UTF-8 JSON ({exc})") from None
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

"""The root exception of aigis and the one error every invalid message raises."""

from __future__ import annotations


class AigisError(Exception):
    """Root of every error aigis raises on purpose. Messages say what happened and what to do."""


class SchemaError(AigisError):
    """A message or record is invalid.

    ``reason`` is a short stable code (``not_json``, ``invalid_field``,
    ``unsupported_schema_version``, ...) fit for a metric label and the DLQ; ``field`` names the
    offending field (dotted path) when there is one; ``str(err)`` is a sentence for a person.
    """

    def __init__(self, reason: str, detail: str, field: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.field = field
        where = f"{field}: " if field else ""
        super().__init__(f"{where}{detail}")

"""What :class:`schemas.settings.Settings` checks and derives before it validates its fields,
and the types its groups are built from.

Two rules over the raw input (environment variables and keyword arguments): a misspelt settings
group is an error, and ``dev.port_offset`` moves every default port of a local stack.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict


class Group(BaseModel):
    """Base of every settings group: frozen, and an unknown field is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _retention_ms(value: int) -> int:
    if value != -1 and value < 60_000:
        raise ValueError("must be -1 (keep forever) or at least 60000 (one minute)")
    return value


RetentionMs = Annotated[int, AfterValidator(_retention_ms)]
"""A topic's ``retention.ms``: -1 keeps records forever, else at least one minute."""

PORT_FIELDS: tuple[tuple[str, str], ...] = (
    ("kafka", "bootstrap_servers"),
    ("redis", "url"),
    ("serving", "inference_url"),
    ("serving", "management_url"),
    ("serving", "metrics_url"),
    ("worker", "metrics_port"),
    ("store", "metrics_port"),
)
"""The settings ``dev.port_offset`` moves when they are not given. The Kafka controller's default
(the broker's port + 1) follows the broker, so it moves with it."""

_PORT = re.compile(r":(\d+)(?=/|$)")


def refuse_unknown_groups(environ: Iterable[str], groups: list[str]) -> None:
    """Refuse ``AIGIS_<GROUP>__<FIELD>`` variables whose group is not one of ``groups``.

    Unknown fields of a known group are refused by the group itself (``extra="forbid"``); a
    misspelt group would otherwise be ignored, and its setting silently not applied. Variables
    without ``__`` are left alone: ``AIGIS_*`` names that are not settings stay allowed.
    """
    unknown = sorted(
        name
        for name in environ
        if name.upper().startswith("AIGIS_")
        and "__" in name
        and name[len("AIGIS_") :].split("__", 1)[0].lower() not in groups
    )
    if unknown:
        raise ValueError(
            f"{', '.join(unknown)}: no such settings group; the groups are "
            f"{', '.join(g.upper() for g in groups)} (AIGIS_<GROUP>__<FIELD>=value)"
        )


def shift_default_ports(data: Any, defaults: Mapping[str, BaseModel]) -> Any:
    """``data`` with every port of :data:`PORT_FIELDS` that it does not give moved by the offset.

    ``defaults`` are the groups' default objects, where the unmoved ports are read. An offset
    that is not a whole number is left for the field's own validation to report.
    """
    if not isinstance(data, dict):
        return data
    offset = str(_given(data, "dev", "port_offset") or "0").strip()
    if not offset.isdigit() or int(offset) == 0:
        return data
    shifted = dict(data)
    for group, field in PORT_FIELDS:
        if _given(data, group, field) is None:
            values = _as_dict(shifted.get(group))
            values[field] = _moved(getattr(defaults[group], field), int(offset))
            shifted[group] = values
    return shifted


def _moved(value: object, offset: int) -> object:
    if isinstance(value, int):
        return value + offset
    return _PORT.sub(lambda m: f":{int(m.group(1)) + offset}", str(value), count=1)


def _as_dict(value: object) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return {name: getattr(value, name) for name in value.model_fields_set}
    return dict(value) if isinstance(value, Mapping) else {}


def _given(data: dict[str, Any], group: str, field: str) -> object:
    """The value given for ``group.field`` (environment or keywords), or None."""
    return _as_dict(data.get(group)).get(field)

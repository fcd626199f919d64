"""Where workers keep their drift indices for ``aigis model status``: one Redis hash,
``{redis.key_prefix}:drift``, a field per (model version, source, statistic, worker) holding
``{"psi": ..., "at": unix seconds}``. Each worker overwrites its own fields after each commit that
moved an index (:mod:`worker.drift`), so the hash holds every worker's latest figures and
``aigis model status`` shows them together, whatever the number of workers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

_SEP: Final[str] = "|"


def drift_key(key_prefix: str) -> str:
    return f"{key_prefix}:drift"


@dataclass(frozen=True)
class DriftEntry:
    """One worker's latest index of one statistic for one model version and source."""

    model_version: str
    source: str
    statistic: str
    worker: str
    psi: float
    at: float
    """When the worker computed it (unix seconds)."""

    def field(self) -> str:
        return _SEP.join((self.model_version, self.source, self.statistic, self.worker))

    def value(self) -> str:
        return json.dumps({"psi": self.psi, "at": self.at})

    @classmethod
    def read(cls, field: str | bytes, value: str | bytes) -> DriftEntry | None:
        """The entry a hash field and value hold, or None when they are not one."""
        try:
            name = field.decode() if isinstance(field, bytes) else field
            version, source, statistic, worker = name.split(_SEP)
            data = json.loads(value)
            return cls(version, source, statistic, worker, float(data["psi"]), float(data["at"]))
        except (ValueError, TypeError, LookupError, RecursionError):
            return None

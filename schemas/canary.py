"""A canary: a candidate model version that answers a fixed slice of the cache misses.

Shared by the workers (which route by it) and ``aigis model canary`` (which starts and ends
it). The state lives in one Redis key, ``{redis.key_prefix}:canary``, as JSON; workers re-read
it every ``worker.canary_refresh_s``. The slice is chosen by image hash alone
(:func:`in_slice`), so the same image always goes the same way and every worker agrees.

The workers also count, per candidate, how the two versions compared on the slice's cache
misses (both versions score those): ``{redis.key_prefix}:canary:stats:{version}``, a hash of
the fields in :data:`STAT_FIELDS`. :class:`Comparison` reads it back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from schemas.errors import AigisError

_VERSION: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""What a model version is (the registry's rule): it goes into URL paths and Redis keys."""

STAT_FIELDS: Final[tuple[str, ...]] = (
    "items",
    "agreed",
    "review_default",
    "review_candidate",
    "p_ai_default",
    "p_ai_candidate",
    "abs_shift",
)
"""Counters of the comparison: items compared, items whose decisions agreed, items each
version sends to review, and sums of each version's p_ai and of the absolute difference."""

_SLICE_BITS: Final[int] = 32
_MAX_STATE_BYTES: Final[int] = 4096
"""A state is a few dozen bytes; anything longer is not one (and is not parsed)."""


class CanaryError(AigisError):
    """A canary cannot be started, read or finished; the message says what to do."""


def canary_key(key_prefix: str) -> str:
    """The Redis key holding the canary's state (absent: no canary)."""
    return f"{key_prefix}:canary"


def stats_key(key_prefix: str, version: str) -> str:
    """The Redis hash where workers count the comparison of ``version`` with the default."""
    return f"{key_prefix}:canary:stats:{version}"


def in_slice(image_sha256: str, percent: float) -> bool:
    """Whether the image with this SHA-256 (hex) falls in a slice of ``percent`` per cent.

    The first 32 bits of the hash, read as a fraction of 2**32, fall below ``percent / 100``:
    SHA-256 spreads images evenly, and the answer depends on nothing but the image.
    """
    if percent <= 0.0:
        return False
    draw = int(image_sha256[: _SLICE_BITS // 4], 16)
    return bool(draw < percent / 100.0 * 2**_SLICE_BITS)


@dataclass(frozen=True)
class CanaryState:
    """A running canary: ``version`` answers ``percent`` per cent of the cache misses."""

    version: str
    percent: float
    default: str
    """The version in service when the canary started (what it is compared with)."""
    started_at: datetime

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.version,
                "percent": self.percent,
                "default": self.default,
                "started_at": self.started_at.isoformat(),
            }
        )

    @classmethod
    def from_json(cls, data: str | bytes) -> CanaryState:
        """The state in ``data``; CanaryError when it is not one (never a crash)."""
        try:
            if len(data) > _MAX_STATE_BYTES:
                raise ValueError(f"over {_MAX_STATE_BYTES} bytes")
            fields = json.loads(data)
            state = cls(
                version=str(fields["version"]),
                percent=float(fields["percent"]),
                default=str(fields["default"]),
                started_at=datetime.fromisoformat(str(fields["started_at"])),
            )
        except (ValueError, TypeError, LookupError, RecursionError) as exc:
            raise CanaryError(
                f"the canary state in Redis cannot be read ({type(exc).__name__}); end it with "
                "`aigis model canary abort` and start it again"
            ) from None
        versions_ok = all(_VERSION.fullmatch(v) for v in (state.version, state.default))
        if not 0.0 < state.percent <= 100.0 or not versions_ok:
            raise CanaryError(
                f"the canary state in Redis names percent {state.percent} and versions "
                f"{state.version[:64]!r} and {state.default[:64]!r}; end it with "
                "`aigis model canary abort`"
            )
        return state

    @classmethod
    def now(cls, version: str, percent: float, default: str) -> CanaryState:
        return cls(version, percent, default, datetime.now(UTC))


@dataclass(frozen=True)
class Comparison:
    """How the candidate compared with the default on the same items (the slice's misses)."""

    items: int
    agreed: int
    review_default: int
    review_candidate: int
    p_ai_default: float
    p_ai_candidate: float
    abs_shift: float

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes] | dict[str, str]) -> Comparison:
        """The comparison in a Redis hash of :data:`STAT_FIELDS` (missing fields count 0)."""
        values = {
            (k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items() if k is not None
        }

        def number(name: str) -> float:
            value = values.get(name, 0)
            try:
                return float(value.decode() if isinstance(value, bytes) else value)
            except ValueError:
                return 0.0

        return cls(
            items=int(number("items")),
            agreed=int(number("agreed")),
            review_default=int(number("review_default")),
            review_candidate=int(number("review_candidate")),
            p_ai_default=number("p_ai_default"),
            p_ai_candidate=number("p_ai_candidate"),
            abs_shift=number("abs_shift"),
        )

    def summary(self) -> dict[str, float | int | None]:
        """Rates and means (None while no item was compared)."""
        n = self.items
        if n == 0:
            return {"items": 0, "agreement": None, "p_ai_shift": None, "mean_abs_shift": None}
        return {
            "items": n,
            "agreement": self.agreed / n,
            "p_ai_default": self.p_ai_default / n,
            "p_ai_candidate": self.p_ai_candidate / n,
            "p_ai_shift": (self.p_ai_candidate - self.p_ai_default) / n,
            "mean_abs_shift": self.abs_shift / n,
            "review_rate_default": self.review_default / n,
            "review_rate_candidate": self.review_candidate / n,
        }

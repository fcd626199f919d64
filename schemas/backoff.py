"""Retry delays: one policy for every process that waits on something that is down."""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int, initial: float, maximum: float, retry_after: float | None = None
) -> float:
    """Seconds to wait before try ``attempt`` (1-based): exponential with "equal jitter" (half the
    step fixed, so a retry never comes at once; half random, so many clients do not retry in
    lockstep), capped at ``maximum``, and never shorter than the server's ``retry_after`` (which
    is itself capped at ``maximum``)."""
    ceiling = min(maximum, initial * 2.0 ** (attempt - 1))
    delay = ceiling * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not cryptography
    return max(delay, min(retry_after or 0.0, maximum))

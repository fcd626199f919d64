"""Split names, their aliases in file and folder names, and stable splits of unsplit data."""

from __future__ import annotations

import hashlib
from typing import Final

SPLITS: Final[tuple[str, str, str]] = ("train", "validation", "test")

_ALIASES: Final[dict[str, str]] = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}

HOLDOUT_FRACTIONS: Final[tuple[float, float]] = (0.8, 0.9)
"""Where a data set without splits is cut: the first 80% of the hash range is train, the next
10% validation, the rest test."""


def canonical_split(name: str) -> str | None:
    """``train`` / ``validation`` / ``test`` for a split name or alias (``val``, ``dev``, ...)."""
    return _ALIASES.get(name.strip().lower())


def split_of_name(name: str) -> str | None:
    """The split a file or folder name announces: ``train-00000-of-00004.parquet`` is train.

    The name must be an alias, or start with one followed by a separator (``-``, ``_``, ``.``).
    """
    lowered = name.lower()
    for alias in sorted(_ALIASES, key=len, reverse=True):
        if lowered == alias or (
            lowered.startswith(alias) and lowered[len(alias) : len(alias) + 1] in "-_."
        ):
            return _ALIASES[alias]
    return None


VALIDATION_FROM_TRAIN: Final[float] = 0.1
"""Share of a train split moved to validation when a data set ships no validation split."""


def hash_position(key: str) -> float:
    """A number in [0, 1) fixed by ``key``: stable across runs, machines and data set growth."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def hashed_split(key: str) -> str:
    """A stable split for an item with no split of its own, from a hash of ``key``.

    Adding files never moves an existing file to another split.
    """
    position = hash_position(key)
    train_end, validation_end = HOLDOUT_FRACTIONS
    if position < train_end:
        return "train"
    return "validation" if position < validation_end else "test"

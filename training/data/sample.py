"""One labelled item, the error every reader raises, and the lazy sequence readers return."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, overload

from schemas.errors import AigisError

UNLABELLED: Final[int] = -1
"""``label_a`` / ``label_b`` of an item read with ``require_labels=False`` from unlabelled data."""


class DataError(AigisError):
    """A data set cannot be read: missing file or column, unknown label, empty split, bad image.

    ``spec`` names the data set (or file) at fault; ``str(err)`` says what to change.
    """

    def __init__(self, detail: str, spec: str | None = None) -> None:
        self.spec = spec
        self.detail = detail
        super().__init__(f"{spec}: {detail}" if spec else detail)


@dataclass(frozen=True)
class Sample:
    """One image with its caption and labels.

    ``label_b`` indexes the data set's generator list (``generators_of``), whose entry 0 is always
    "real"; a human image has ``label_a == 0`` and ``label_b == 0``. ``group`` is the content
    class when the data set records one (for example a CIFAR-10 category); held-out evaluation
    selects on it.
    """

    image: bytes
    """Encoded image file bytes."""
    caption: str | None
    label_a: int
    """0 human, 1 AI (``UNLABELLED`` when the data set has no labels)."""
    label_b: int
    """Index into the data set's generator list (``UNLABELLED`` when the data set has none)."""
    sha256: str
    """Hex SHA-256 of ``image``."""
    group: str | None = None


def check_labels(label_a: int, label_b: int, generators: tuple[str, ...], where: str) -> None:
    """Raise DataError unless the pair is a valid label for a data set with ``generators``.

    Human items are Task B class 0 ("real"); AI items are one of the other classes.
    """
    if label_a not in (0, 1):
        raise DataError(f"Label_A is {label_a}; it must be 0 (human) or 1 (AI-generated).", where)
    if not 0 <= label_b < len(generators):
        raise DataError(
            f"Label_B is {label_b}, outside 0..{len(generators) - 1} of the generator list "
            f"{list(generators)}. Fix the label, or list the generators in generators.json.",
            where,
        )
    if (label_a == 0) != (label_b == 0):
        raise DataError(
            f"Label_A {label_a} contradicts Label_B {label_b} ({generators[label_b]}): human "
            "images are Label_B 0 (real) and AI images one of the generators.",
            where,
        )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_sample(
    image: bytes,
    caption: str | None,
    label_a: int,
    label_b: int,
    group: str | None = None,
) -> Sample:
    """Build a Sample, hashing the image and turning an empty caption into ``None``."""
    caption = caption.strip() if caption else None
    return Sample(image, caption or None, label_a, label_b, sha256_hex(image), group)


class LazySamples(Sequence[Sample]):
    """A read-only sequence that builds each Sample on access from ``get(index)``.

    Readers return these so that a data set larger than memory is decoded one item at a time.
    """

    def __init__(self, length: int, get: Callable[[int], Sample]) -> None:
        self._length = length
        self._get = get

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> Sample: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Sample]: ...
    def __getitem__(self, index: int | slice) -> Sample | Sequence[Sample]:
        if isinstance(index, slice):
            picked = range(self._length)[index]
            return LazySamples(len(picked), lambda i: self._get(picked[i]))
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(f"sample index {index} outside 0..{self._length - 1}")
        return self._get(index)

    def __iter__(self) -> Iterator[Sample]:
        for index in range(self._length):
            yield self._get(index)

    def __repr__(self) -> str:
        return f"LazySamples(len={self._length})"


def concat(parts: Sequence[Sequence[Sample]]) -> Sequence[Sample]:
    """The items of every sequence in ``parts``, one after another, fetched on access."""
    where = [(part, index) for part, items in enumerate(parts) for index in range(len(items))]
    return LazySamples(len(where), lambda i: parts[where[i][0]][where[i][1]])

"""Which reader opens a data set spec, and the two calls everything else uses.

A spec is a string: ``smoke``, a directory of parquet files, an image-folder root, or anything a
registered reader claims (the label store registers its URLs). Readers are tried newest first, so
a plug-in can claim specs before the built-in readers look at them.

A plug-in registers itself when imported; the modules in :data:`PLUGIN_MODULES` are imported (when
they exist) before the first spec is resolved, so ``load_split("labels://...")`` works without the
caller importing the label store first.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final, Protocol

from training.data.encoding import normalise_encoding
from training.data.sample import DataError, LazySamples, Sample, sha256_hex
from training.data.splits import SPLITS, canonical_split

PLUGIN_MODULES: Final[tuple[str, ...]] = ("training.labelstore",)
NORMALISED_CACHE_BYTES: Final[int] = 512 * 1024 * 1024
"""Re-encoded images a loaded split keeps in memory (per process), so epochs after the first
skip the re-encoding."""
"""Modules imported before the first spec is resolved, so that they can register readers."""


class DataSource(Protocol):
    """An opened data set: its generator list and its splits."""

    @property
    def generators(self) -> tuple[str, ...]:
        """Task B class names, indexed by ``Sample.label_b``; entry 0 is "real"."""
        ...

    def split(self, name: str, *, require_labels: bool) -> Sequence[Sample]:
        """The items of split ``name`` (``train``, ``validation`` or ``test``); may be empty.

        With ``require_labels`` a data set without labels raises DataError; without it, its
        items carry ``UNLABELLED``.
        """
        ...


@dataclass(frozen=True)
class Reader:
    name: str
    """Short name used in messages (``parquet``, ``image-folder``, ``labelstore``)."""
    claims: Callable[[str], bool]
    """Whether this reader should open ``spec``; cheap, no reading beyond a directory listing."""
    open: Callable[[str], DataSource]
    describes: str
    """What specs it reads, for the message when none claims a spec."""


_readers: list[Reader] = []
_plugins_loaded = False
_lock = threading.Lock()


def register_reader(reader: Reader) -> None:
    """Add ``reader``; it is tried before every reader registered earlier. Idempotent by name."""
    with _lock:
        _readers[:] = [known for known in _readers if known.name != reader.name]
        _readers.insert(0, reader)


def readers() -> tuple[Reader, ...]:
    """Registered readers, in the order they are tried."""
    _load_plugins()
    return tuple(_readers)


def open_source(spec: str) -> DataSource:
    """Open the data set ``spec`` with the first reader that claims it."""
    for reader in readers():
        if reader.claims(spec):
            return reader.open(spec)
    known = "; ".join(reader.describes for reader in readers())
    raise DataError(f"no reader understands this data set spec. Give one of: {known}.", spec)


def load_split(
    spec: str, split: str, *, normalise: bool = True, require_labels: bool = True
) -> Sequence[Sample]:
    """The items of ``split`` (``train``, ``validation`` or ``test``) of data set ``spec``.

    Items are decoded on access. With ``normalise`` (the default, for training and evaluation)
    every image is re-encoded by ``normalise_encoding`` and ``sha256`` is that of the re-encoded
    bytes; pass ``normalise=False`` for the bytes as stored. Raises DataError for an unknown split
    or an empty one.
    """
    canonical = canonical_split(split)
    if canonical is None:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}.", spec)
    samples = open_source(spec).split(canonical, require_labels=require_labels)
    if len(samples) == 0:
        raise DataError(
            f"split {canonical!r} is empty. Check the file or folder names "
            "(train*, validation* or val*, test*) or the split column.",
            spec,
        )
    if not normalise:
        return samples
    return LazySamples(len(samples), _Normalising(samples, spec, canonical))


def generators_of(spec: str) -> tuple[str, ...]:
    """Task B class names of data set ``spec``, indexed by ``Sample.label_b``."""
    return open_source(spec).generators


class _Normalising:
    """Re-encodes items on access, and keeps results until ``NORMALISED_CACHE_BYTES`` are held.

    Training reads every item once per epoch; re-encoding costs as much as decoding, so a data
    set that fits (the smoke set does, many times over) is re-encoded once per process.
    """

    def __init__(self, samples: Sequence[Sample], spec: str, split: str) -> None:
        self._samples = samples
        self._spec = spec
        self._split = split
        self._done: dict[int, Sample] = {}
        self._held = 0

    def __call__(self, index: int) -> Sample:
        cached = self._done.get(index)
        if cached is not None:
            return cached
        sample = self._samples[index]
        try:
            image = normalise_encoding(sample.image)
        except DataError as err:
            where = f"(split {self._split}, item sha256 {sample.sha256})"
            raise DataError(f"{err.detail} {where}", self._spec) from err
        sample = replace(sample, image=image, sha256=sha256_hex(image))
        if self._held + len(image) <= NORMALISED_CACHE_BYTES:
            self._done[index] = sample
            self._held += len(image)
        return sample


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in PLUGIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            # Only "the plug-in is not installed" is harmless; a broken plug-in must be seen.
            if err.name is None or not module.startswith(err.name):
                raise

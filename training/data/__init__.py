"""Data sets for training and evaluation, behind one call: ``load_split(spec, split)``.

A spec is ``smoke`` (the built-in synthetic set; ``smoke:N`` has N classes), a directory of CT2 /
Defactify parquet files, an image-folder root (CIFAKE's layout included), or anything a registered
reader claims (the label store). Imports neither torch nor transformers.
"""

from __future__ import annotations

from pathlib import Path

from training.data.folder import ImageFolderSource
from training.data.parquet import ParquetSource, parquet_files
from training.data.registry import (
    DataSource,
    Reader,
    generators_of,
    load_split,
    open_source,
    readers,
    register_reader,
)
from training.data.sample import UNLABELLED, DataError, LazySamples, Sample, make_sample
from training.data.splits import SPLITS

__all__ = [
    "SPLITS",
    "UNLABELLED",
    "DataError",
    "DataSource",
    "LazySamples",
    "Reader",
    "Sample",
    "generators_of",
    "load_split",
    "make_sample",
    "open_source",
    "readers",
    "register_reader",
]


def _open_smoke(spec: str) -> DataSource:
    # Builds on first use; imports scikit-image then.
    from training.data.smoke import BOTH_JPEG, ORDINARY, smoke_dir

    name, colon, classes = spec.partition(":")
    variant = BOTH_JPEG if name.endswith("-jpeg") else ORDINARY
    if name in SHORTCUT_SPECS:
        if colon:
            raise DataError(f"{name} has one label set (CT2); write it without :N", spec)
        from training.data.smoke_shortcut import shortcut_dir

        return ParquetSource(shortcut_dir(variant), spec)
    if not colon:
        return ParquetSource(smoke_dir(variant=variant), spec)
    if not (classes.isascii() and classes.isdigit()):
        raise DataError(f"write {name}:N, N the number of classes (real and N-1 generators)", spec)
    return ParquetSource(smoke_dir(int(classes), variant), spec)


SMOKE_SPECS = ("smoke", "smoke-jpeg", "smoke-shortcut", "smoke-shortcut-jpeg")
"""Names of the built-in smoke sets; ``smoke`` and ``smoke-jpeg`` also take ``:N``."""
SHORTCUT_SPECS = ("smoke-shortcut", "smoke-shortcut-jpeg")


# Registered oldest first; the newest is tried first, so the most specific reader comes last.
register_reader(
    Reader(
        name="image-folder",
        claims=lambda spec: Path(spec).is_dir(),
        open=lambda spec: ImageFolderSource(Path(spec), spec),
        describes="an image-folder root (root/<split>/<class>/* or root/<class>/*)",
    )
)
register_reader(
    Reader(
        name="parquet",
        claims=lambda spec: bool(parquet_files(Path(spec))),
        open=lambda spec: ParquetSource(Path(spec), spec),
        describes="a directory of CT2 parquet files (Image, Caption, Label_A, Label_B)",
    )
)
register_reader(
    Reader(
        name="smoke",
        claims=lambda spec: spec.partition(":")[0] in SMOKE_SPECS,
        open=_open_smoke,
        describes="'smoke' (the built-in synthetic smoke set), 'smoke:N' (N classes), or "
        "'smoke-jpeg' / 'smoke-jpeg:N' (the same items, both classes as JPEG), or "
        "'smoke-shortcut' / 'smoke-shortcut-jpeg' (the format the easiest cue)",
    )
)

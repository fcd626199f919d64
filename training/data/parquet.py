"""The CT2 / Defactify parquet format: reading a directory of files, and writing one.

Columns (names matched case-insensitively): ``Image``, ``Caption``, ``Label_A``, ``Label_B``, and
optionally ``split`` and ``group``. ``Image`` holds the encoded file as bytes, as a Hugging Face
``{"bytes", "path"}`` struct, or as a path relative to the parquet file. A file's split comes from
its ``split`` column, else from its name or a parent folder's (``train-00000-of-00004.parquet``,
``validation*``/``val*``, ``test*``). ``generators.json`` beside the files (a JSON list) names
the Task B classes when they are not the CT2 six.

Labels, captions and splits are read at open; images on first access to a file. When all the
files together are at most ``IN_MEMORY_BYTES``, image columns are read into memory; otherwise
each file's image column is copied once into an uncompressed Arrow file under
``<cache_dir>/arrow`` (safe to delete at any time) and memory-mapped, so random access (a
shuffled training epoch) reads one image, not a compressed row group, and memory holds only what
the operating system pages in.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.labels import GENERATORS
from schemas.settings import load_settings
from training.data.sample import (
    UNLABELLED,
    DataError,
    LazySamples,
    Sample,
    check_labels,
    make_sample,
)
from training.data.splits import canonical_split, split_of_name

GENERATORS_FILE: Final[str] = "generators.json"
IN_MEMORY_BYTES: Final[int] = 256 * 1024 * 1024
"""Data sets up to this size (all parquet files together) are read into memory."""
_COLUMNS: Final[tuple[str, ...]] = ("image", "caption", "label_a", "label_b", "split", "group")
_HF_FEATURES: Final[dict[str, Any]] = {
    "Caption": {"dtype": "string", "_type": "Value"},
    "Image": {"_type": "Image"},
    "Label_A": {"dtype": "int64", "_type": "Value"},
    "Label_B": {"dtype": "int64", "_type": "Value"},
    "group": {"dtype": "string", "_type": "Value"},
}
CT2_SCHEMA: Final[pa.Schema] = pa.schema(
    [
        ("Caption", pa.string()),
        ("Image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("Label_A", pa.int64()),
        ("Label_B", pa.int64()),
        ("group", pa.string()),
    ],
    metadata={b"huggingface": json.dumps({"info": {"features": _HF_FEATURES}}).encode()},
)
"""What :func:`write_ct2` writes: the CT2 columns, plus the optional ``group``."""


def parquet_files(path: Path) -> list[Path]:
    """The parquet files of ``path`` (itself, or every ``*.parquet`` below it), sorted."""
    if path.is_file():
        return [path] if path.suffix == ".parquet" else []
    if not path.is_dir():
        return []
    return sorted(file for file in path.rglob("*.parquet") if not file.name.startswith("."))


def read_generators(root: Path, default: tuple[str, ...] = GENERATORS) -> tuple[str, ...]:
    """The generator list in ``root/generators.json``, or ``default`` when there is none."""
    file = root / GENERATORS_FILE
    if not file.is_file():
        return default
    try:
        names = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {file}: {err}", str(root)) from err
    if (
        not isinstance(names, list)
        or len(names) < 2
        or not all(isinstance(name, str) and name for name in names)
        or len(set(names)) != len(names)
    ):
        raise DataError(
            f'{file} must be a JSON list of at least two distinct names, "real" first.',
            str(root),
        )
    if names[0] != "real":
        raise DataError(f'{file} must list "real" first (Task B class 0).', str(root))
    return tuple(names)


def write_generators(root: Path, generators: Sequence[str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / GENERATORS_FILE).write_text(json.dumps(list(generators)) + "\n", encoding="utf-8")


@dataclass
class _File:
    """What is known about one parquet file after reading everything but its images."""

    path: Path
    columns: dict[str, str]
    """Our lower-case column name -> the file's own spelling."""
    splits: np.ndarray
    label_a: np.ndarray
    label_b: np.ndarray
    captions: list[str | None]
    groups: list[str | None]
    images: pa.ChunkedArray | None = None
    """The memory-mapped image column, opened on first access."""

    @property
    def labelled(self) -> bool:
        return "label_a" in self.columns and "label_b" in self.columns


class ParquetSource:
    """A directory (or a single file) of CT2-format parquet files."""

    def __init__(
        self, root: Path, spec: str | None = None, *, cache_dir: Path | None = None
    ) -> None:
        """``cache_dir`` holds memory-mappable copies of large data sets (default: the setting)."""
        self._root = root
        self._cache_dir = cache_dir
        self._spec = spec or str(root)
        paths = parquet_files(root)
        if not paths:
            raise DataError("no parquet files found.", self._spec)
        self._in_memory = sum(path.stat().st_size for path in paths) <= IN_MEMORY_BYTES
        self._files = [self._index(path) for path in paths]
        directory = root if root.is_dir() else root.parent
        self.generators = read_generators(directory)

    def split(self, name: str, *, require_labels: bool) -> Sequence[Sample]:
        missing = next((file for file in self._files if not file.labelled), None)
        if require_labels and missing is not None:
            raise DataError(
                f"{missing.path.name} has no Label_A / Label_B column; this command needs "
                "labelled data (columns Image, Caption, Label_A, Label_B).",
                self._spec,
            )
        rows = [
            (file, int(row)) for file in self._files for row in np.flatnonzero(file.splits == name)
        ]
        if require_labels:
            for file, row in rows:
                self._check_row(file, row)
        return LazySamples(len(rows), lambda index: self._sample(*rows[index]))

    def _index(self, path: Path) -> _File:
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowException) as err:
            raise DataError(f"{path} is not a readable parquet file: {err}", self._spec) from err
        columns = {name.lower(): name for name in schema.names if name.lower() in _COLUMNS}
        if "image" not in columns:
            raise DataError(
                f"{path.name} has no Image column (columns: {', '.join(schema.names)}). "
                "CT2 files have Image, Caption, Label_A and Label_B.",
                self._spec,
            )
        light = [columns[name] for name in _COLUMNS[1:] if name in columns]
        table = pq.read_table(path, columns=light)
        rows = pq.read_metadata(path).num_rows
        return _File(
            path=path,
            columns=columns,
            splits=self._splits(path, table, columns, rows),
            label_a=_int_column(table, columns.get("label_a"), rows),
            label_b=_int_column(table, columns.get("label_b"), rows),
            captions=_str_column(table, columns.get("caption"), rows),
            groups=_str_column(table, columns.get("group"), rows),
        )

    def _splits(
        self, path: Path, table: pa.Table, columns: dict[str, str], rows: int
    ) -> np.ndarray:
        if "split" in columns:
            values = table.column(columns["split"]).to_pylist()
            known = {value: canonical_split(str(value)) for value in set(values)}
            unknown = sorted(str(value) for value, split in known.items() if split is None)
            if unknown:
                raise DataError(
                    f"{path.name}: unknown split values {unknown}; use train, validation or test.",
                    self._spec,
                )
            return np.array([known[value] for value in values], dtype=object)
        relative = path.relative_to(self._root) if self._root.is_dir() else Path(path.name)
        for part in reversed(relative.parts):
            split = split_of_name(part)
            if split is not None:
                return np.full(rows, split, dtype=object)
        raise DataError(
            f"cannot tell which split {relative} belongs to. Name it train*, validation* (or "
            "val*) or test*, put it in a folder so named, or add a split column.",
            self._spec,
        )

    def _check_row(self, file: _File, row: int) -> None:
        where = f"{self._spec} ({file.path.name}, row {row})"
        label_a, label_b = int(file.label_a[row]), int(file.label_b[row])
        if UNLABELLED in (label_a, label_b):
            raise DataError("Label_A or Label_B is empty; every row needs both labels.", where)
        check_labels(label_a, label_b, self.generators, where)

    def _sample(self, file: _File, row: int) -> Sample:
        if file.images is None:
            file.images = image_column(
                file.path, file.columns["image"], self._cache_dir, in_memory=self._in_memory
            )
        value = file.images[row].as_py()
        image = self._image_bytes(value, file, row)
        label_a, label_b = int(file.label_a[row]), int(file.label_b[row])
        return make_sample(image, file.captions[row], label_a, label_b, file.groups[row])

    def _image_bytes(self, value: object, file: _File, row: int) -> bytes:
        if isinstance(value, dict):
            value = value.get("bytes") or value.get("path")
        if isinstance(value, bytes) and value:
            return value
        if isinstance(value, str) and value:
            target = Path(value) if Path(value).is_absolute() else file.path.parent / value
            try:
                return target.read_bytes()
            except OSError as err:
                raise DataError(
                    f"{file.path.name} row {row}: image file {target} cannot be read ({err}). "
                    "Image paths are relative to the parquet file.",
                    self._spec,
                ) from err
        raise DataError(f"{file.path.name} row {row}: the Image cell is empty.", self._spec)


def _int_column(table: pa.Table, name: str | None, rows: int) -> np.ndarray:
    if name is None:
        return np.full(rows, UNLABELLED, dtype=np.int64)
    column = table.column(name)
    try:
        return np.asarray(column.fill_null(UNLABELLED).to_numpy(), dtype=np.int64)
    except (pa.ArrowException, ValueError, TypeError) as err:
        raise DataError(f"column {name} must hold integers ({column.type} found).") from err


def _str_column(table: pa.Table, name: str | None, rows: int) -> list[str | None]:
    if name is None:
        return [None] * rows
    return [None if value is None else str(value) for value in table.column(name).to_pylist()]


def image_column(
    path: Path, column: str, cache_dir: Path | None = None, *, in_memory: bool
) -> pa.ChunkedArray:
    """``column`` of parquet file ``path``, read whole ``in_memory`` or else memory-mapped.

    The memory-mapped copy lives in ``<cache_dir>/arrow``, keyed by the file's path, size and
    modification time; it is written once by streaming row groups (memory stays at one batch)
    and shared by every process that reads the file.
    """
    if in_memory:
        return pq.read_table(path, columns=[column]).column(0)
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{column}"
    cache = (cache_dir or load_settings().cache_dir) / "arrow"
    target = cache / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.arrow"
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        fd, temporary = tempfile.mkstemp(dir=cache, suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as sink:
                field = schema.field(column)
                with pa.ipc.new_file(sink, pa.schema([field])) as writer:
                    for batch in parquet.iter_batches(batch_size=64, columns=[column]):
                        writer.write_batch(batch)
            os.replace(temporary, target)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    return pa.ipc.open_file(pa.memory_map(str(target))).read_all().column(0)


def write_ct2(path: Path, samples: Iterable[Sample], row_group_size: int = 64) -> int:
    """Write ``samples`` as one CT2-format parquet file; returns the number of rows.

    Streams one row group at a time, so memory holds ``row_group_size`` images, and writes
    under a temporary name first, so a failure never leaves half a file. ``Image`` is a Hugging
    Face ``{"bytes", "path"}`` struct, and the schema carries the feature metadata that lets
    ``datasets.load_dataset("parquet", ...)`` decode it as an image; ``group`` may be null.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    rows = 0
    items = iter(samples)
    try:
        with pq.ParquetWriter(partial, CT2_SCHEMA) as writer:
            while chunk := list(itertools.islice(items, row_group_size)):
                writer.write_table(_ct2_table(chunk))
                rows += len(chunk)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return rows


def _ct2_table(items: Sequence[Sample]) -> pa.Table:
    columns = {
        "Caption": [item.caption for item in items],
        "Image": [{"bytes": item.image, "path": None} for item in items],
        "Label_A": [item.label_a for item in items],
        "Label_B": [item.label_b for item in items],
        "group": [item.group for item in items],
    }
    return pa.table(columns, schema=CT2_SCHEMA)

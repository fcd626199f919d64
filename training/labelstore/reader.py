"""The label store as a training data set, so ``aigis train --data labels://...`` reads it.

Spec: ``labels://<directory or fsspec URL>[?origin=human|pseudo|all][&snapshot=ID]
[&min_confidence=P]``, for example ``labels:///var/lib/aigis/labels?origin=human`` or
``labels://s3://bucket/labels``. A plain directory or URL whose root holds the store's commit log
is claimed too (with ``origin=all``). Splits are cut by a hash of each image's SHA-256, so an image
stays in its split as the store grows. Records without a readable image (kept with
``keep_image_bytes`` off and no URI) are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs

import pyarrow as pa
import pyarrow.compute as pc

from schemas.labels import GENERATORS
from training.data.registry import Reader, register_reader
from training.data.sample import DataError, LazySamples, Sample
from training.data.splits import hashed_split
from training.labelstore.errors import ImageError, StoreError
from training.labelstore.records import Origin
from training.labelstore.store import LabelStore

PREFIX: Final[str] = "labels://"
_ORIGINS: Final[dict[str, Origin | None]] = {
    "all": None,
    "human": Origin.HUMAN,
    "pseudo": Origin.PSEUDO,
}


@dataclass(frozen=True)
class StoreSpec:
    """A parsed ``labels://`` spec."""

    url: str
    origin: Origin | None = None
    snapshot: str | None = None
    min_confidence: float = 0.0


def parse_spec(spec: str) -> StoreSpec:
    """Split a spec into the store URL and its options. Raises DataError for a bad option."""
    body = spec.removeprefix(PREFIX)
    url, _, query = body.partition("?")
    if not url:
        raise DataError("give the store's directory or URL after labels://", spec)
    options = {key: values[-1] for key, values in parse_qs(query, strict_parsing=False).items()}
    unknown = set(options) - {"origin", "snapshot", "min_confidence"}
    if unknown:
        raise DataError(
            f"unknown option(s) {', '.join(sorted(unknown))}; use origin, snapshot, min_confidence",
            spec,
        )
    origin_name = options.get("origin", "all")
    if origin_name not in _ORIGINS:
        raise DataError(f"origin must be one of {', '.join(_ORIGINS)}, not {origin_name!r}", spec)
    try:
        min_confidence = float(options.get("min_confidence", 0.0))
    except ValueError:
        raise DataError("min_confidence must be a number between 0 and 1", spec) from None
    return StoreSpec(url, _ORIGINS[origin_name], options.get("snapshot"), min_confidence)


def claims(spec: str) -> bool:
    if spec.startswith(PREFIX):
        return True
    if "?" in spec:
        return False
    try:
        return LabelStore(spec).exists()
    except (OSError, ValueError, ImportError):
        return False


class StoreSource:
    """An opened store: its records, read once, split by image hash."""

    def __init__(self, spec: str) -> None:
        self._spec = spec
        parsed = parse_spec(spec)
        self._store = LabelStore(parsed.url)
        try:
            snapshot = self._store.open_snapshot(parsed.snapshot) if parsed.snapshot else None
            table = self._store.read(snapshot, origin=parsed.origin)
        except StoreError as err:
            raise DataError(str(err), spec) from None
        has_image = pc.or_(pc.is_valid(table["image_blob"]), pc.is_valid(table["image_uri"]))
        confident = pc.or_kleene(
            pc.is_null(table["confidence"]),
            pc.greater_equal(table["confidence"], parsed.min_confidence),
        )
        self._table = table.filter(pc.and_(has_image, confident))
        extra = sorted(set(self._table["generator"].to_pylist()) - set(GENERATORS))
        self._generators = (*GENERATORS, *extra)

    @property
    def generators(self) -> tuple[str, ...]:
        return self._generators

    def split(self, name: str, *, require_labels: bool) -> Sequence[Sample]:
        hashes = self._table["image_sha256"].to_pylist()
        rows = [i for i, sha in enumerate(hashes) if hashed_split(sha) == name]
        part = self._table.take(pa.array(rows, type=pa.int64()))
        return samples_of(self._store, part, self._generators, spec=self._spec)


RECORD_COLUMNS: Final[tuple[str, ...]] = (
    "image_sha256",
    "label_a",
    "generator",
    "caption",
    "image_blob",
    "image_uri",
)
"""The columns :func:`record_image` and :func:`record_sample` read from a row."""


def samples_of(
    store: LabelStore, table: pa.Table, generators: Sequence[str], *, spec: str
) -> Sequence[Sample]:
    """The records of ``table`` as Samples (images read from ``store`` on access).

    ``label_b`` indexes ``generators``, which must name every record's generator. An image that
    is missing, unreadable, too large or not the one labelled (its bytes do not hash to the
    record's ``image_sha256``) raises DataError naming ``spec``, the image hash and the reason.
    """
    records = table.select(list(RECORD_COLUMNS)).to_pylist()

    def sample(index: int) -> Sample:
        row = records[index]
        try:
            image = record_image(store, row)
        except ImageError as err:
            raise DataError(f"{err.reason}: {err}", spec) from None
        return record_sample(row, image, generators)

    return LazySamples(len(records), sample)


def record_image(store: LabelStore, row: dict[str, Any]) -> bytes:
    """The checked bytes of a row's image (:meth:`LabelStore.image_bytes`); raises ImageError."""
    return store.image_bytes(
        _text(row["image_blob"]), _text(row["image_uri"]), sha256=str(row["image_sha256"])
    )


def record_sample(row: dict[str, Any], image: bytes, generators: Sequence[str]) -> Sample:
    """A row of :data:`RECORD_COLUMNS` and its image as a Sample labelled on ``generators``."""
    return Sample(
        image=image,
        caption=_text(row["caption"]),
        label_a=int(row["label_a"]),
        label_b=list(generators).index(str(row["generator"])),
        sha256=str(row["image_sha256"]),
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


register_reader(
    Reader(
        name="labelstore",
        claims=claims,
        open=StoreSource,
        describes="labels://<label store directory or URL>[?origin=human|pseudo|all]",
    )
)

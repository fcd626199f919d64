"""The data of one retraining cycle: the gold hold-out, and base data mixed with pseudo-labels.

The gold hold-out is human-labelled only: the test split of the hold-out data set plus every
human review decision in the store snapshot. Its images, by the hash of their bytes as stored
and as re-encoded for training, are what pseudo-label selection must exclude.

The mixed training set is exposed as a data set spec (``retrain-mix://<id>``) through the reader
registry, so the trainer reads it like any other: its train split is the base train split plus
the selected pseudo-labels, its validation split the base one. Torch-free.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from training.data import DataError, LazySamples, Reader, Sample, open_source, register_reader
from training.data.encoding import normalise_encoding
from training.data.sample import sha256_hex
from training.labelstore import LabelStore, Origin, Snapshot
from training.labelstore.reader import samples_of

MIX_PREFIX: Final[str] = "retrain-mix://"


@dataclass(frozen=True)
class GoldHoldout:
    samples: Sequence[Sample]
    """Re-encoded for evaluation, labels indexing ``generators``."""
    generators: tuple[str, ...]
    exclude: frozenset[str]
    """Hashes of every hold-out image, as stored and as re-encoded."""
    counts: dict[str, int]


def gold_holdout(
    spec: str, store: LabelStore, snapshot: Snapshot, generators: tuple[str, ...]
) -> GoldHoldout:
    """The hold-out of a cycle whose model predicts ``generators``.

    Raises DataError when the data set's classes are not among ``generators``. Human decisions
    naming a generator the model does not know are left out (and counted).
    """
    base = open_source(spec)
    base_test = base.split("test", require_labels=True)
    remap = _remap(base.generators, generators, spec)
    raw_base = [replace(s, label_b=remap[s.label_b]) for s in base_test]
    humans = store.read(snapshot, origin=Origin.HUMAN)
    known = pc.is_in(humans["generator"], pa.array(list(generators), pa.string()))
    has_image = pc.or_(pc.is_valid(humans["image_blob"]), pc.is_valid(humans["image_uri"]))
    usable = humans.filter(pc.and_(known, has_image))
    raw_humans = list(samples_of(store, usable, generators, spec=store.url))
    normalised = [_normalised(s) for s in [*raw_base, *raw_humans]]
    if not normalised:
        raise DataError(
            "the gold hold-out is empty: the test split and the store hold no item", spec
        )
    exclude = {s.sha256 for s in raw_base} | {s.sha256 for s in normalised}
    exclude |= set(humans["image_sha256"].to_pylist())
    return GoldHoldout(
        samples=normalised,
        generators=generators,
        exclude=frozenset(exclude),
        counts={
            "holdout_base": len(raw_base),
            "holdout_human": len(raw_humans),
            "holdout_human_unusable": humans.num_rows - usable.num_rows,
        },
    )


class MixedSource:
    """A base data set whose train split also holds ``extra`` samples."""

    def __init__(self, base: str, extra: Sequence[Sample]) -> None:
        self._base = open_source(base)
        self._extra = extra

    @property
    def generators(self) -> tuple[str, ...]:
        return self._base.generators

    def split(self, name: str, *, require_labels: bool) -> Sequence[Sample]:
        own = self._base.split(name, require_labels=require_labels)
        if name != "train" or not self._extra:
            return own
        extra = self._extra
        return LazySamples(
            len(own) + len(extra), lambda i: own[i] if i < len(own) else extra[i - len(own)]
        )


def mixed_spec(base: str, store: LabelStore, selected: pa.Table) -> tuple[str, dict[str, int]]:
    """Register base + ``selected`` pseudo-labels as a data set; return its spec and sizes."""
    source = open_source(base)
    extra = samples_of(store, selected, source.generators, spec=store.url)
    mix = MixedSource(base, extra)
    spec = f"{MIX_PREFIX}{uuid.uuid4().hex[:12]}"
    # One reader name for every cycle: registering again replaces the previous cycle's mix.
    register_reader(
        Reader(
            name="retrain-mix",
            claims=lambda candidate: candidate == spec,
            open=lambda _: mix,
            describes=f"{MIX_PREFIX}<id> (built by a retraining cycle)",
        )
    )
    base_train = len(source.split("train", require_labels=True))
    return spec, {"base_train": base_train, "train_total": base_train + len(extra)}


def _remap(data: tuple[str, ...], model: tuple[str, ...], spec: str) -> list[int]:
    missing = [name for name in data if name not in model]
    if missing:
        raise DataError(
            f"the hold-out has classes {missing} that the model in service does not predict "
            f"({list(model)}); use a hold-out labelled with the model's generator list",
            spec,
        )
    return [model.index(name) for name in data]


def _normalised(sample: Sample) -> Sample:
    image = normalise_encoding(sample.image)
    return replace(sample, image=image, sha256=sha256_hex(image))

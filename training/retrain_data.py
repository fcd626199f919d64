"""The data of one retraining cycle: the gold hold-out, and base data mixed with pseudo-labels.

The gold hold-out is human-labelled only: the test split of the hold-out data set plus every
human review decision in the store snapshot. Its images, by the hash of their bytes as stored
and as re-encoded for training, are what pseudo-label selection must exclude.

The mixed training set is exposed as a data set spec (``retrain-mix://<id>``) through the reader
registry, so the trainer reads it like any other: its train split is the base train split plus
the selected pseudo-labels, its validation split the base one. Torch-free.

Every store image a cycle uses is read once, before training, and checked: within the worker's
size limit, and hashing to the ``image_sha256`` it was labelled under (an image replaced behind
its URI would otherwise be trained under the old label, and could be a hold-out image). Items
whose image cannot be used are skipped and counted by reason (``skipped.<reason>``,
``holdout_skipped.<reason>``); the pseudo-labels' checked bytes wait in a spool directory for the
trainer, so nothing is fetched again during training.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import structlog

from training.data import DataError, LazySamples, Reader, Sample, open_source, register_reader
from training.data.encoding import normalise_encoding
from training.data.sample import sha256_hex
from training.labelstore import ImageError, LabelStore, Origin, Snapshot
from training.labelstore.reader import RECORD_COLUMNS, record_image, record_sample

log = structlog.get_logger(__name__)

MIX_PREFIX: Final[str] = "retrain-mix://"


@dataclass(frozen=True)
class GoldHoldout:
    samples: Sequence[Sample]
    """Re-encoded for evaluation, labels indexing ``generators``."""
    generators: tuple[str, ...]
    exclude: frozenset[str]
    """Hashes of every hold-out image, as stored and as re-encoded."""
    counts: dict[str, int]


class TooFewImagesError(DataError):
    """Fewer selected pseudo-labels than the cycle's minimum have a usable image."""


@dataclass(frozen=True)
class ImageReads:
    """What reading the images of a table's rows found."""

    rows: list[int]
    """Indexes of the rows whose image was read and checked, ascending."""
    skipped: dict[str, int]
    """Rows whose image cannot be used, by ``ImageError.reason``."""


def read_images(
    store: LabelStore,
    table: pa.Table,
    keep: Callable[[int, bytes], None],
    *,
    concurrency: int = 1,
) -> ImageReads:
    """Read and check the image of every row of ``table``; hand each good one to ``keep``.

    ``keep(row, data)`` runs on up to ``concurrency`` threads at once. A row whose image cannot
    be used is skipped and logged by its hash and reason (never its URI).
    """
    records = table.select(list(RECORD_COLUMNS)).to_pylist()

    def one(index: int) -> str | None:
        try:
            data = record_image(store, records[index])
        except ImageError as err:
            sha = str(records[index]["image_sha256"])[:64]
            log.warning("retrain_image_skipped", image_sha256=sha, reason=err.reason)
            return err.reason
        keep(index, data)
        return None

    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="retrain-read") as pool:
        outcomes = list(pool.map(one, range(len(records))))
    good = [i for i, reason in enumerate(outcomes) if reason is None]
    skipped = Counter(reason for reason in outcomes if reason is not None)
    return ImageReads(good, dict(sorted(skipped.items())))


def gold_holdout(
    spec: str,
    store: LabelStore,
    snapshot: Snapshot,
    generators: tuple[str, ...],
    *,
    concurrency: int = 1,
    leave_out: str | None = None,
) -> GoldHoldout:
    """The hold-out of a cycle whose model predicts ``generators``.

    Raises DataError when the data set's classes are not among ``generators``. Human decisions
    naming a generator the model does not know, or whose image cannot be used, are left out
    (and counted); their hashes are excluded from training all the same. So are decisions that
    name ``leave_out``, a generator being added: they are its own examples and hold-out.
    """
    base = open_source(spec)
    base_test = base.split("test", require_labels=True)
    remap = _remap(base.generators, generators, spec)
    raw_base = [replace(s, label_b=remap[s.label_b]) for s in base_test]
    humans = reviewed_classes(store.read(snapshot, origin=Origin.HUMAN), generators)
    known = pc.is_in(humans["generator"], pa.array(list(generators), pa.string()))
    if leave_out is not None:  # the examples of a generator being added are not gold for it
        named = pc.fill_null(pc.equal(humans["generator_name"], leave_out), False)
        known = pc.and_(known, pc.invert(named))
    has_image = pc.or_(pc.is_valid(humans["image_blob"]), pc.is_valid(humans["image_uri"]))
    usable = humans.filter(pc.and_(known, has_image))
    images: dict[int, bytes] = {}
    reads = read_images(store, usable, images.__setitem__, concurrency=concurrency)
    records = usable.select(list(RECORD_COLUMNS)).to_pylist()
    raw_humans = [record_sample(records[i], images.pop(i), generators) for i in reads.rows]
    holdout = [normalised(s) for s in [*raw_base, *raw_humans]]
    if not holdout:
        raise DataError(
            "the gold hold-out is empty: the test split and the store hold no item", spec
        )
    exclude = {s.sha256 for s in raw_base} | {s.sha256 for s in holdout}
    exclude |= set(humans["image_sha256"].to_pylist())
    return GoldHoldout(
        samples=holdout,
        generators=generators,
        exclude=frozenset(exclude),
        counts={
            "holdout_base": len(raw_base),
            "holdout_human": len(raw_humans),
            "holdout_human_unusable": humans.num_rows - usable.num_rows,
            **{f"holdout_skipped.{reason}": n for reason, n in reads.skipped.items()},
        },
    )


def reviewed_classes(humans: pa.Table, generators: tuple[str, ...]) -> pa.Table:
    """``humans`` with each decision's class on ``generators``: the name a reviewer typed
    (``generator_name``, stored with ``generator`` "other") when the set has a class of that
    name, as it does once the generator was added; else the stored ``generator``."""
    classes = pa.array(list(generators), pa.string())
    typed = pc.fill_null(pc.is_in(humans["generator_name"], classes), False)
    labels = pc.if_else(typed, humans["generator_name"], humans["generator"])
    return humans.set_column(humans.schema.get_field_index("generator"), "generator", labels)


class MixedSource:
    """A base data set whose train split also holds ``extra`` samples, labelled on
    ``generators`` (default: the base's; a grown set must list the base's classes first)."""

    def __init__(
        self, base: str, extra: Sequence[Sample], generators: tuple[str, ...] | None = None
    ) -> None:
        self._base = open_source(base)
        self._extra = extra
        self._generators = generators or self._base.generators

    @property
    def generators(self) -> tuple[str, ...]:
        return self._generators

    def split(self, name: str, *, require_labels: bool) -> Sequence[Sample]:
        own = self._base.split(name, require_labels=require_labels)
        if name != "train" or not self._extra:
            return own
        extra = self._extra
        return LazySamples(
            len(own) + len(extra), lambda i: own[i] if i < len(own) else extra[i - len(own)]
        )


def mixed_spec(
    base: str,
    store: LabelStore,
    selected: pa.Table,
    *,
    spool: Path,
    min_usable: int = 1,
    concurrency: int = 1,
    added: Sequence[Sample] = (),
    generators: tuple[str, ...] | None = None,
) -> tuple[str, dict[str, int]]:
    """Register base + ``selected`` pseudo-labels as a data set; return its spec and sizes.

    ``added`` are more training samples labelled on ``generators``, a label set grown from the
    base's (the examples of a generator being added).

    The pseudo-labels' images are read and checked now and kept in ``spool`` (a private
    directory the caller removes after training); those that cannot be used are left out.
    Raises TooFewImagesError, before anything is trained, when fewer than ``min_usable`` are left.
    """
    source = open_source(base)
    reads = read_images(
        store,
        selected,
        lambda row, data: (spool / str(row)).write_bytes(data),
        concurrency=concurrency,
    )
    if len(reads.rows) < min_usable:
        skipped = ", ".join(f"{reason} {n}" for reason, n in reads.skipped.items()) or "none"
        raise TooFewImagesError(
            f"only {len(reads.rows)} of {selected.num_rows} selected pseudo-labels have a usable "
            f"image (skipped: {skipped}); a cycle needs at least {min_usable} "
            "(AIGIS_RETRAIN__MIN_USABLE_ITEMS), so nothing was trained. Check that the images' "
            "URIs still serve the images that were labelled, or lower the minimum",
            store.url,
        )
    records = selected.select(list(RECORD_COLUMNS)).to_pylist()
    labels = generators or source.generators
    if labels[: len(source.generators)] != source.generators:
        raise DataError(
            f"the label set {list(labels)} does not extend the base data's "
            f"{list(source.generators)}; use base data labelled with the model's classes",
            base,
        )
    selected_count = len(reads.rows)
    extra = LazySamples(
        selected_count + len(added),
        lambda i: (
            record_sample(records[reads.rows[i]], (spool / str(reads.rows[i])).read_bytes(), labels)
            if i < selected_count
            else added[i - selected_count]
        ),
    )
    mix = MixedSource(base, extra, labels)
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
    sizes = {"base_train": base_train, "train_total": base_train + len(extra)}
    sizes["usable"] = len(reads.rows)
    sizes.update({f"skipped.{reason}": n for reason, n in reads.skipped.items()})
    return spec, sizes


def _remap(data: tuple[str, ...], model: tuple[str, ...], spec: str) -> list[int]:
    missing = [name for name in data if name not in model]
    if missing:
        raise DataError(
            f"the hold-out has classes {missing} that the model in service does not predict "
            f"({list(model)}); use a hold-out labelled with the model's generator list",
            spec,
        )
    return [model.index(name) for name in data]


def normalised(sample: Sample) -> Sample:
    """``sample`` with its image re-encoded as training and evaluation read it."""
    image = normalise_encoding(sample.image)
    return replace(sample, image=image, sha256=sha256_hex(image))

"""The examples of a generator added to a model's label set (``aigis retrain --add-generator``).

They are the human review decisions of a store snapshot that name the generator: as a class of
its own (a label set that already has it), or as ``other`` with the name kept
(``generator_name``, what a reviewer typing a new name gives). Nothing is trained until at
least ``retrain.min_examples_new_generator`` of them have a usable image. Sorted by image hash,
every :data:`HOLDOUT_EVERY`-th goes to the new class's own hold-out, which the promotion gate
reports beside the old classes' comparison; the rest are trained on. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import pyarrow.compute as pc

from schemas.labels import normalise_generator
from training.data import DataError, Sample
from training.labelstore import LabelStore, Origin, Snapshot
from training.labelstore.reader import RECORD_COLUMNS, record_sample
from training.retrain_data import normalised, read_images, reviewed_classes

HOLDOUT_EVERY: Final[int] = 4
"""One example in this many (at least one) is held out to report the new class."""


class TooFewExamplesError(DataError):
    """Fewer usable human-labelled examples of the new generator than the setting asks for."""


@dataclass(frozen=True)
class NewGenerator:
    name: str
    generators: tuple[str, ...]
    """The grown label set: the model's classes, then ``name``."""
    train: Sequence[Sample]
    """Examples to train on, labelled on ``generators``, images as stored."""
    holdout: Sequence[Sample]
    """Held-out examples, re-encoded for evaluation, labelled on ``generators``."""
    counts: dict[str, int]


def new_generator_examples(
    store: LabelStore,
    snapshot: Snapshot,
    name: str,
    generators: tuple[str, ...],
    *,
    min_examples: int,
    max_examples: int | None = None,
    concurrency: int = 1,
) -> NewGenerator:
    """The examples of generator ``name`` for a model predicting ``generators`` (module
    docstring). Raises DataError for a name that is unusable or already a class, and
    TooFewExamplesError when fewer than ``min_examples`` have a usable image. At most
    ``max_examples`` (the first by image hash) are read."""
    try:
        name = normalise_generator(name)
    except ValueError as err:
        raise DataError(str(err), store.url) from None
    if name in generators:
        raise DataError(
            f"{name!r} is already a class of the model in service ({list(generators)}); "
            "run aigis retrain without --add-generator",
            store.url,
        )
    grown = (*generators, name)
    # A decision stored as "other" with the name typed is an example of the named class.
    humans = reviewed_classes(store.read(snapshot, origin=Origin.HUMAN), grown)
    named = pc.equal(humans["generator"], name)
    has_image = pc.or_(pc.is_valid(humans["image_blob"]), pc.is_valid(humans["image_uri"]))
    rows = humans.filter(pc.and_(pc.fill_null(named, False), has_image))
    rows = rows.sort_by([("image_sha256", "ascending")])
    if max_examples is not None:  # bounded like a class of pseudo-labels
        rows = rows.slice(0, max_examples)
    images: dict[int, bytes] = {}
    reads = read_images(store, rows, images.__setitem__, concurrency=concurrency)
    if len(reads.rows) < min_examples:
        raise TooFewExamplesError(
            f"only {len(reads.rows)} human-labelled examples of {name!r} with a usable image are "
            f"in snapshot {snapshot.id} ({rows.num_rows} labelled); adding a generator needs "
            f"{min_examples} (AIGIS_RETRAIN__MIN_EXAMPLES_NEW_GENERATOR). Label more in review "
            "(type the generator's name), then run again; nothing was trained",
            store.url,
        )
    records = rows.select(list(RECORD_COLUMNS)).to_pylist()
    samples = [record_sample(records[i], images.pop(i), grown) for i in reads.rows]
    held = set(range(0, len(samples), HOLDOUT_EVERY))
    return NewGenerator(
        name=name,
        generators=grown,
        train=[s for i, s in enumerate(samples) if i not in held],
        holdout=[normalised(s) for i, s in enumerate(samples) if i in held],
        counts={
            "new_generator_labelled": rows.num_rows,
            "new_generator_train": len(samples) - len(held),
            "new_generator_holdout": len(held),
            **{f"new_generator_skipped.{r}": n for r, n in reads.skipped.items()},
        },
    )

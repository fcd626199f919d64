"""The examples of a generator added by ``aigis retrain --add-generator``, from a label store on
disk: names refused with a reason, too few examples refused, the rest split train / hold-out."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from schemas.labels import GENERATORS
from training.data import DataError
from training.data.sample import sha256_hex
from training.labelstore import LabelRecord, LabelStore, Origin
from training.new_generator import TooFewExamplesError, new_generator_examples

pytestmark = pytest.mark.unit


def png(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (seed % 256, 40, 90)).save(out, format="PNG")
    return out.getvalue()


def store_with(tmp_path: Path, named: int, name: str = "flux/1-dev") -> LabelStore:
    """A store with ``named`` human decisions typing ``name`` (other, name kept), one naming it
    as a class, one for another generator and a pseudo-label, which never count."""
    store = LabelStore(str(tmp_path / "labels"), keep_image_bytes=True)
    now = datetime.now(UTC)

    def record(seed: int, origin: Origin, generator: str, kept: str | None) -> LabelRecord:
        data = png(seed)
        sha = sha256_hex(data)
        return LabelRecord(
            image_sha256=sha,
            origin=origin,
            label_a=1,
            label_b=None,
            generator=generator,
            generator_name=kept,
            labelled_at=now,
            stored_at=now,
            confidence=0.99 if origin is Origin.PSEUDO else None,
            image_blob=store.put_image(data, sha),
        )

    records = [record(i, Origin.HUMAN, "other", name) for i in range(named)]
    records.append(record(200, Origin.HUMAN, name, None))
    records.append(record(201, Origin.HUMAN, "other", "ideogram/3"))
    records.append(record(202, Origin.PSEUDO, "other", name))
    store.append(records)
    return store


def test_too_few_examples_are_refused_before_anything_is_trained(tmp_path: Path) -> None:
    store = store_with(tmp_path, 3)
    with pytest.raises(TooFewExamplesError, match="only 4 human-labelled examples of 'flux/1-dev'"):
        new_generator_examples(store, store.snapshot(), "flux/1-dev", GENERATORS, min_examples=5)


def test_enough_examples_are_split_into_training_and_a_hold_out(tmp_path: Path) -> None:
    store = store_with(tmp_path, 7)
    added = new_generator_examples(
        store, store.snapshot(), " FLUX/1-dev ", GENERATORS, min_examples=8
    )
    assert added.name == "flux/1-dev"
    assert added.generators == (*GENERATORS, "flux/1-dev")
    assert (len(added.train), len(added.holdout)) == (6, 2)
    assert {s.label_b for s in [*added.train, *added.holdout]} == {len(GENERATORS)}
    assert added.counts["new_generator_labelled"] == 8


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("sdxl", "already a class"),
        ("unknown", "reserved"),
        ("a/b/c", "generator name"),
        ("x" * 300, "generator name"),
        ("", "generator name"),
    ],
)
def test_unusable_names_are_refused_with_a_reason(tmp_path: Path, name: str, reason: str) -> None:
    store = store_with(tmp_path, 1)
    with pytest.raises(DataError, match=reason):
        new_generator_examples(store, store.snapshot(), name, GENERATORS, min_examples=1)

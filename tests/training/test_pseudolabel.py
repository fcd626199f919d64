"""Pseudo-labelling: confidence selection, per-class caps, the 8:2 split, output train reads."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigis.cli import app
from schemas.labels import GENERATORS
from training.data import UNLABELLED, DataError, generators_of, load_split
from training.data.parquet import write_ct2
from training.pseudolabel import (
    Candidate,
    PseudoLabels,
    select,
    split_train_validation,
    write_pseudo_labels,
)


def candidate(label_b: int, confidence_a: float, confidence_b: float, index: int = 0) -> Candidate:
    label_a = int(label_b > 0)
    return Candidate(index, label_a, label_b, confidence_a, confidence_b, UNLABELLED, UNLABELLED)


def indices(candidates: list[Candidate]) -> list[tuple[int, int]]:
    return [(c.label_b, c.index) for c in candidates]


@pytest.mark.unit
def test_both_confidences_must_reach_the_threshold() -> None:
    pool = [candidate(1, 0.9, 0.9), candidate(1, 0.9, 0.7), candidate(0, 0.7, 0.95)]
    pool.append(candidate(2, 0.8, 0.8))  # at the threshold counts
    assert [c.label_b for c in select(pool, threshold=0.8)] == [1, 2]
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        select(pool, threshold=1.5)


@pytest.mark.unit
def test_per_class_caps_are_seeded_and_leave_small_classes_alone() -> None:
    pool = [candidate(0, 0.99, 0.99, i) for i in range(50)]
    pool += [candidate(4, 0.95, 0.9, i) for i in range(3)]
    kept = select(pool, threshold=0.8, max_per_class=10, seed=1)
    assert Counter(c.label_b for c in kept) == {0: 10, 4: 3}
    again = select(pool, threshold=0.8, max_per_class=10, seed=1)
    other = select(pool, threshold=0.8, max_per_class=10, seed=2)
    assert indices(kept) == indices(again)
    assert indices(kept) != indices(other)


@pytest.mark.unit
def test_split_is_eight_to_two_within_each_class() -> None:
    pool = [candidate(0, 1, 1, i) for i in range(20)] + [candidate(3, 1, 1, i) for i in range(5)]
    pool.append(candidate(5, 1, 1))  # a class of one goes to train
    train, validation = split_train_validation(pool, seed=0)
    assert Counter(c.label_b for c in train) == {0: 16, 3: 4, 5: 1}
    assert Counter(c.label_b for c in validation) == {0: 4, 3: 1}
    assert not set(indices(train)) & set(indices(validation))


@pytest.mark.unit
def test_nothing_confident_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="lower --threshold"):
        write_pseudo_labels(PseudoLabels([], [], {}), tmp_path, GENERATORS)


@pytest.mark.slow
def test_cli_pseudo_label_writes_what_train_reads(tmp_path: Path) -> None:
    from serving.model.checkpoint import save_checkpoint
    from serving.model.presets import build_preset
    from training.data.smoke import generate_split, photographs

    built = build_preset("tiny", "fused", name="tiny-pl", version="3")
    model = save_checkpoint(
        built.model, built.tokenizer, built.image_processor, built.config, tmp_path / "model"
    )
    source = tmp_path / "source"
    # Labelled, so the summary reports agreement; selection itself never reads the labels.
    items = generate_split(photographs(), 1, 20)
    write_ct2(source / "test.parquet", items)

    out = tmp_path / "pseudo"
    args = ["pseudo-label", "--model", str(model), "--data", str(source), "--output", str(out)]
    result = CliRunner().invoke(app, [*args, "--threshold", "0", "--max-per-class", "8"])
    assert result.exit_code == 0, result.output

    summary = json.loads((out / "pseudo_labels.json").read_text())
    assert summary["source"]["items"] == 20
    assert summary["model"] == {"name": "tiny-pl", "version": "3"}
    assert summary["kept"] == summary["train"] + summary["validation"]
    assert all(count <= 8 for count in summary["per_class"].values())
    assert summary["agreement"]["items"] == summary["kept"]
    assert generators_of(str(out)) == GENERATORS
    train = load_split(str(out), "train", normalise=False)
    validation = load_split(str(out), "validation", normalise=False)
    assert len(train) + len(validation) == summary["kept"]
    originals = {item.sha256 for item in items}
    assert {s.sha256 for s in train} <= originals  # source bytes, not re-encoded
    assert all(s.label_a == int(s.label_b > 0) for s in train)

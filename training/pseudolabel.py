"""Pseudo-labelling, the NAU-QMUL step: label unlabelled images with a trained detector.

Keep the items whose Task A and Task B confidences both reach the threshold, label them with the
model's answer, cap each class (the paper warns that confident items are mostly of the easy,
plentiful classes, which would make the next training set more imbalanced than the last), and
split them 8:2 into train and validation, stratified by class. The result is written as CT2
parquet, so ``aigis train --data <output>`` reads it. Images are written as stored in the source,
before any re-encoding, so training normalises them exactly once.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from PIL import Image

from training.data import SPLITS, UNLABELLED, DataError, Sample, generators_of, load_split
from training.data.encoding import decode, normalise_encoding
from training.data.parquet import write_ct2, write_generators
from training.data.registry import open_source
from training.data.sample import LazySamples, concat
from training.evaluate import decoded_batches

if TYPE_CHECKING:
    from serving.model.predictor import Prediction, Predictor

TRAIN_SHARE: Final[float] = 0.8
SUMMARY_FILE: Final[str] = "pseudo_labels.json"


@dataclass(frozen=True)
class Candidate:
    """The model's labels and confidences for one source item (by index: no image held)."""

    index: int
    """Position of the item in the scored sequence."""
    label_a: int
    label_b: int
    confidence_a: float
    confidence_b: float
    source_label_a: int
    """The label the source data set had (``UNLABELLED`` when none), for agreement figures."""
    source_label_b: int


@dataclass(frozen=True)
class PseudoLabels:
    """Selected items with the model's labels, fetched from the source on access."""

    train: Sequence[Sample]
    validation: Sequence[Sample]
    summary: dict[str, Any]


def label_samples(
    predictor: Predictor,
    samples: Sequence[Sample],
    *,
    batch_size: int = 32,
    progress: str | None = None,
) -> list[Candidate]:
    """Run the model over ``samples`` and label each with its answer.

    Images are scored in the normalised training encoding (what the model was trained on).
    """
    candidates: list[Candidate] = []
    batches = decoded_batches(samples, batch_size, progress=progress, decoder=_normalised)
    for batch, images in batches:
        predictions = predictor.predict(images, [sample.caption for sample in batch])
        for sample, prediction in zip(batch, predictions, strict=True):
            index = len(candidates)
            candidates.append(_candidate(index, sample, prediction, predictor.generators))
    return candidates


def _normalised(data: bytes) -> Image.Image:
    return decode(normalise_encoding(data))


def _candidate(
    index: int, sample: Sample, prediction: Prediction, generators: Sequence[str]
) -> Candidate:
    is_ai = prediction.p_ai >= 0.5
    if is_ai:
        ai_probs = {name: prediction.generator_probs[name] for name in generators[1:]}
        label_b = generators.index(max(ai_probs, key=ai_probs.__getitem__))
    else:
        label_b = 0
    return Candidate(
        index=index,
        label_a=int(is_ai),
        label_b=label_b,
        confidence_a=prediction.confidence_a,
        confidence_b=prediction.confidence_b,
        source_label_a=sample.label_a,
        source_label_b=sample.label_b,
    )


def select(
    candidates: Sequence[Candidate],
    *,
    threshold: float,
    max_per_class: int | None = None,
    seed: int = 0,
) -> list[Candidate]:
    """Candidates confident on both tasks, at most ``max_per_class`` per Task B class.

    Over-full classes keep a seeded random sample, not their most confident items: those are the
    easiest ones and would teach the next model little.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold} is outside 0..1")
    confident = [
        c for c in candidates if c.confidence_a >= threshold and c.confidence_b >= threshold
    ]
    by_class = _by_class(confident)
    rng = np.random.default_rng(seed)
    kept = []
    for label_b in sorted(by_class):
        items = by_class[label_b]
        if max_per_class is not None and len(items) > max_per_class:
            chosen = np.sort(rng.choice(len(items), size=max_per_class, replace=False))
            items = [items[int(i)] for i in chosen]
        kept.extend(items)
    return kept


def split_train_validation(
    candidates: Sequence[Candidate], *, seed: int = 0, train_share: float = TRAIN_SHARE
) -> tuple[list[Candidate], list[Candidate]]:
    """Split 8:2 within each class, so validation has every class train has (when it has 2+)."""
    rng = np.random.default_rng(seed)
    train: list[Candidate] = []
    validation: list[Candidate] = []
    for _, items in sorted(_by_class(candidates).items()):
        shuffled = [items[int(i)] for i in rng.permutation(len(items))]
        size = len(shuffled)
        cut = size if size < 2 else min(size - 1, max(1, round(size * train_share)))
        train.extend(shuffled[:cut])
        validation.extend(shuffled[cut:])
    return train, validation


def _by_class(candidates: Sequence[Candidate]) -> dict[int, list[Candidate]]:
    groups: dict[int, list[Candidate]] = defaultdict(list)
    for candidate in candidates:
        groups[candidate.label_b].append(candidate)
    return groups


def pseudo_label(
    predictor: Predictor,
    spec: str,
    *,
    threshold: float = 0.8,
    max_per_class: int | None = None,
    seed: int = 0,
    split: str = "all",
    batch_size: int = 32,
    progress: bool = True,
) -> PseudoLabels:
    """Label ``split`` of data set ``spec`` (``all``: every split) and select pseudo-labels.

    The source may be unlabelled; when it has labels, the summary reports how often the kept
    pseudo-labels agree with them.
    """
    samples = _source(spec, split)
    generators = tuple(predictor.generators)
    same_taxonomy = generators_of(spec) == generators
    candidates = label_samples(
        predictor, samples, batch_size=batch_size, progress="pseudo-label" if progress else None
    )
    kept = select(candidates, threshold=threshold, max_per_class=max_per_class, seed=seed)
    train, validation = split_train_validation(kept, seed=seed)
    summary = {
        "model": {"name": predictor.name, "version": predictor.version},
        "source": {"spec": spec, "split": split, "items": len(samples)},
        "threshold": threshold,
        "max_per_class": max_per_class,
        "seed": seed,
        "generators": list(generators),
        "confident": sum(
            c.confidence_a >= threshold and c.confidence_b >= threshold for c in candidates
        ),
        "kept": len(kept),
        "per_class": {generators[b]: n for b, n in sorted(_counts(kept).items())},
        "train": len(train),
        "validation": len(validation),
        "agreement": _agreement(kept, same_taxonomy),
    }
    return PseudoLabels(_relabelled(samples, train), _relabelled(samples, validation), summary)


def _relabelled(samples: Sequence[Sample], chosen: Sequence[Candidate]) -> Sequence[Sample]:
    """The chosen source items with the model's labels, as stored (read on access)."""

    def item(i: int) -> Sample:
        candidate = chosen[i]
        source = samples[candidate.index]
        return replace(source, label_a=candidate.label_a, label_b=candidate.label_b)

    return LazySamples(len(chosen), item)


def write_pseudo_labels(result: PseudoLabels, output: Path, generators: Sequence[str]) -> None:
    """Write ``train.parquet``, ``validation.parquet``, ``generators.json`` and the summary."""
    if len(result.train) == 0:
        raise DataError(
            "no item reached the confidence threshold, so there is nothing to write; lower "
            "--threshold or score more data."
        )
    output.mkdir(parents=True, exist_ok=True)
    write_ct2(output / "train.parquet", result.train)
    write_ct2(output / "validation.parquet", result.validation)
    write_generators(output, generators)
    text = json.dumps(result.summary, indent=2) + "\n"
    (output / SUMMARY_FILE).write_text(text, encoding="utf-8")


def _source(spec: str, split: str) -> Sequence[Sample]:
    """The items of ``split`` (or of every split for ``all``) as stored, labelled or not."""
    if split == "all":
        source = open_source(spec)
        samples = concat([source.split(name, require_labels=False) for name in SPLITS])
        if len(samples) == 0:
            raise DataError("the data set has no items to pseudo-label.", spec)
        return samples
    return load_split(spec, split, normalise=False, require_labels=False)


def _counts(candidates: Sequence[Candidate]) -> Counter[int]:
    return Counter(c.label_b for c in candidates)


def _agreement(kept: Sequence[Candidate], same_taxonomy: bool) -> dict[str, float | None] | None:
    """How often kept pseudo-labels match the source's own labels, when it has some.

    Task B is compared only when the source uses the model's generator list.
    """
    labelled = [c for c in kept if c.source_label_a != UNLABELLED]
    if not labelled:
        return None
    task_b = sum(c.label_b == c.source_label_b for c in labelled) / len(labelled)
    return {
        "items": len(labelled),
        "task_a": sum(c.label_a == c.source_label_a for c in labelled) / len(labelled),
        "task_b": task_b if same_taxonomy else None,
    }

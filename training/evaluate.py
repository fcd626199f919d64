"""Evaluate a detector on a data set: metrics of both tasks, robustness, and figures.

``evaluate_model`` is the library call (the retraining gate uses it); ``run_evaluation`` is what
``aigis evaluate`` runs: it also writes ``metrics.json``, per-item ``predictions.parquet`` (hashes
and scores, never pixels or captions), every band pair's rates (``thresholds.csv``), the PNG
figures and a model card (``README.md``) to an output directory (``aigis evaluate`` also
rewrites the card in the checkpoint).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm import tqdm

from training import metrics, plots, thresholds
from training.card import training_summary, write_card
from training.data import DataError, Sample, generators_of, load_split
from training.data.encoding import decode
from training.degrade import DEGRADATIONS, pick

if TYPE_CHECKING:
    from serving.model.predictor import Predictor

Perturbation = Callable[[Image.Image], Image.Image]


@dataclass(frozen=True)
class Scored:
    """Model scores of one pass over a set of samples, aligned with the samples."""

    p_ai: np.ndarray
    generator_given_ai: np.ndarray


def decoded_batches(
    samples: Sequence[Sample],
    batch_size: int,
    *,
    progress: str | None = None,
    decoder: Callable[[bytes], Image.Image] = decode,
) -> Iterator[tuple[Sequence[Sample], list[Image.Image]]]:
    """``samples`` in order, ``batch_size`` at a time, with their images decoded to RGB.

    ``progress`` is the label of a progress bar on stderr; None shows none.
    """
    with tqdm(total=len(samples), desc=progress, unit="img", disable=progress is None) as bar:
        for start in range(0, len(samples), batch_size):
            batch = samples[start : start + batch_size]
            yield batch, [decoder(sample.image) for sample in batch]
            bar.update(len(batch))


def score_samples(
    predictor: Predictor,
    samples: Sequence[Sample],
    *,
    perturbations: dict[str, Perturbation] | None = None,
    batch_size: int = 32,
    progress: str | None = None,
) -> dict[str, Scored]:
    """Score ``samples`` clean (key ``clean``) and under each named perturbation.

    Each image is decoded once per batch; every variant of the batch is scored from it.
    """
    variants: dict[str, Perturbation | None] = {"clean": None, **(perturbations or {})}
    p_ai: dict[str, list[np.ndarray]] = {name: [] for name in variants}
    given: dict[str, list[np.ndarray]] = {name: [] for name in variants}
    for batch, images in decoded_batches(samples, batch_size, progress=progress):
        captions = [sample.caption for sample in batch]
        for name, perturb in variants.items():
            inputs = images if perturb is None else [perturb(image) for image in images]
            scores = predictor.scores(inputs, captions)
            p_ai[name].append(scores.p_ai)
            given[name].append(scores.generator_given_ai)
    width = len(predictor.generators)
    return {
        name: Scored(
            np.concatenate(p_ai[name]) if p_ai[name] else np.zeros(0),
            np.concatenate(given[name]) if given[name] else np.zeros((0, width)),
        )
        for name in variants
    }


def model_labels(
    samples: Sequence[Sample], data_generators: Sequence[str], model_generators: Sequence[str]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Task A labels, and Task B labels re-indexed into the model's generator list.

    Task B labels are None when the data set has a class the model does not know (a generator
    held out of training, or another taxonomy such as CIFAKE's "fake"): only Task A is scored.
    """
    label_a = np.array([sample.label_a for sample in samples], dtype=np.int64)
    if not set(data_generators) <= set(model_generators):
        return label_a, None
    remap = np.array([model_generators.index(name) for name in data_generators], dtype=np.int64)
    return label_a, remap[np.array([sample.label_b for sample in samples], dtype=np.int64)]


@dataclass(frozen=True)
class EvalOptions:
    generators: Sequence[str] | None = None
    """The data set's generator list (``generators_of(spec)``); None: the model's."""
    robustness: bool = False
    """Also score ``degradations`` (one more pass each), applied to every image, real and AI
    alike, so that a format shortcut shows as a drop."""
    degradations: tuple[str, ...] = tuple(DEGRADATIONS)
    """Names in :data:`training.degrade.DEGRADATIONS`, in the order the report lists them."""
    batch_size: int = 32
    progress: str | None = None
    """Label of a progress bar on stderr; None shows none."""
    bands: tuple[float, float] | None = None
    """``(human_threshold, ai_threshold)``: also report the rates of these decision bands
    (``operating_point``, see :mod:`training.thresholds`)."""


def evaluate_model(
    predictor: Predictor, samples: Sequence[Sample], options: EvalOptions = EvalOptions()
) -> dict[str, Any]:
    """Metrics of ``predictor`` on labelled ``samples``.

    Returns ``n``, ``task_a``, ``task_b`` (None when the data has classes the model lacks),
    ``ece``, ``confusion``, ``reliability`` and ``timing``; with ``options.robustness`` also a
    ``robustness`` section holding ``n``, ``task_a``, ``task_b`` and ``ece`` per degradation.
    """
    return evaluate_scored(predictor, samples, options)[0]


def evaluate_scored(
    predictor: Predictor, samples: Sequence[Sample], options: EvalOptions = EvalOptions()
) -> tuple[dict[str, Any], Scored]:
    """:func:`evaluate_model`'s metrics, and the clean scores per item."""
    if len(samples) == 0:
        raise DataError("there is nothing to evaluate: the sample set is empty.")
    model_generators = tuple(predictor.generators)
    data_generators = options.generators or model_generators
    label_a, label_b = model_labels(samples, data_generators, model_generators)
    started = time.perf_counter()
    scored = score_samples(
        predictor,
        samples,
        perturbations=_degradations(options),
        batch_size=options.batch_size,
        progress=options.progress,
    )
    elapsed = time.perf_counter() - started
    clean = scored.pop("clean")
    report = _metrics(label_a, label_b, clean, model_generators)
    pred_a = metrics.predict_a(clean.p_ai)
    report["confusion"] = {"task_a": metrics.confusion(label_a, pred_a, 2)}
    if label_b is not None:
        pred_b = metrics.predict_b(pred_a, clean.generator_given_ai)
        report["confusion"]["task_b"] = metrics.confusion(label_b, pred_b, len(model_generators))
    report["reliability"] = metrics.reliability(label_a, clean.p_ai)
    if options.bands is not None:
        human, ai = options.bands
        point = thresholds.operating_point(clean.p_ai, label_a, human, ai)
        report["operating_point"] = point.as_dict()
    if options.robustness:
        report["robustness"] = {
            name: _metrics(label_a, label_b, variant, model_generators)
            for name, variant in scored.items()
        }
    passes = 1 + len(scored)
    report["timing"] = {"seconds": elapsed, "items_per_s": passes * len(samples) / elapsed}
    return report, clean


def _degradations(options: EvalOptions) -> dict[str, Perturbation] | None:
    if not options.robustness:
        return None
    try:
        return pick(options.degradations)
    except ValueError as err:
        raise DataError(str(err)) from err


def _metrics(
    label_a: np.ndarray,
    label_b: np.ndarray | None,
    scored: Scored,
    generators: Sequence[str],
) -> dict[str, Any]:
    if label_b is None:
        return {
            "n": len(label_a),
            "task_a": metrics.task_a(label_a, scored.p_ai),
            "task_b": None,
            "ece": metrics.ece(label_a, scored.p_ai),
        }
    result = metrics.score(label_a, label_b, scored.p_ai, scored.generator_given_ai, generators)
    return {"n": len(label_a), **result}


def select_holdout(
    samples: Sequence[Sample], generators: Sequence[str], classes: Sequence[str]
) -> list[Sample]:
    """Samples whose group or generator name is one of ``classes`` (case-insensitive).

    This is the held-out protocol: train without some classes (CIFAKE's "cat" group, or a
    generator), then score Task A on those classes only. Raises DataError when none match.
    """
    wanted = {name.strip().lower() for name in classes if name.strip()}
    picked = [
        sample
        for sample in samples
        if (sample.group or "").lower() in wanted or generators[sample.label_b].lower() in wanted
    ]
    if not picked:
        raise DataError(
            f"no item belongs to the held-out classes {sorted(wanted)}; they must name a "
            f"generator ({', '.join(generators)}) or a group of the data set (a group column, "
            "or a folder below the class folders)."
        )
    return picked


def run_evaluation(
    predictor: Predictor,
    spec: str,
    output: Path,
    *,
    split: str = "test",
    holdout_classes: Sequence[str] = (),
    robustness: bool = True,
    degradations: Sequence[str] = tuple(DEGRADATIONS),
    batch_size: int = 32,
    limit: int | None = None,
    progress: bool = True,
    bands: tuple[float, float] | None = None,
    source_bands: Mapping[str, tuple[float, float]] | None = None,
    checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Evaluate on ``split`` of ``spec`` and write metrics.json, predictions, the band pairs'
    rates, figures and a model card to ``output``.

    With ``robustness``, every image is also scored under each of ``degradations``. With
    ``holdout_classes`` only those classes are scored, and only on Task A. ``bands``
    (``(human, ai)``, the worker's) and ``source_bands`` (per source) are reported as operating
    points, and the AI threshold stepped at ``bands``' human one. ``checkpoint``, the directory
    the predictor was loaded from, lends its ``training.json`` to the card.
    """
    generators = generators_of(spec)
    samples: Sequence[Sample] = load_split(spec, split)
    if holdout_classes:
        samples = select_holdout(samples, generators, holdout_classes)
    if limit is not None:
        samples = samples[:limit]
    label = "evaluate" if progress else None
    options = EvalOptions(generators, robustness, tuple(degradations), batch_size, label, bands)
    report, clean = evaluate_scored(predictor, samples, options)
    if holdout_classes:
        _task_a_only(report)
    report = {
        "model": {
            "name": predictor.name,
            "version": predictor.version,
            "architecture": predictor.architecture,
            "generators": list(predictor.generators),
        },
        "data": {
            "spec": spec,
            "split": split,
            "generators": list(generators),
            "holdout_classes": list(holdout_classes) or None,
            "limit": limit,
        },
        **report,
    }
    output.mkdir(parents=True, exist_ok=True)
    # One pass over the (lazily read) samples for what the files need of them.
    keys = [(sample.sha256, sample.label_a, sample.label_b) for sample in samples]
    label_a = np.array([label for _, label, _ in keys], dtype=np.int64)
    marks = _operating_points(report, output, label_a, clean.p_ai, bands, source_bands or {})
    (output / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    _write_predictions(output / "predictions.parquet", keys, clean, predictor)
    figures = _write_figures(output, report)
    figures += plots.curves_png(label_a, clean.p_ai, output, marks)
    config = predictor.checkpoint.config
    training = training_summary(checkpoint) if checkpoint is not None else None
    write_card(output, config, training, report, figures=[path.name for path in figures])
    return report


def _operating_points(
    report: dict[str, Any],
    output: Path,
    label_a: np.ndarray,
    p_ai: np.ndarray,
    bands: tuple[float, float] | None,
    source_bands: Mapping[str, tuple[float, float]],
) -> dict[str, thresholds.OperatingPoint]:
    """Add the sweep at ``bands``' human threshold and each source's operating point to
    ``report``, write every band pair to ``thresholds.csv``; return the points to mark."""
    points = thresholds.sweep(p_ai, label_a)
    thresholds.write_csv(points, output / "thresholds.csv")
    if bands is None:
        return {}
    marks = {"worker": thresholds.operating_point(p_ai, label_a, *bands)}
    by_source = {
        name: thresholds.operating_point(p_ai, label_a, *pair)
        for name, pair in sorted(source_bands.items())
    }
    report["thresholds"] = [
        p.as_dict() for p in thresholds.single_thresholds(points, bands[0], 0.1)
    ]
    if by_source:
        report["operating_points_by_source"] = {k: p.as_dict() for k, p in by_source.items()}
    return {**marks, **{f"source {name}": p for name, p in by_source.items()}}


def _task_a_only(report: dict[str, Any]) -> None:
    report["task_b"] = None
    report["confusion"].pop("task_b", None)
    for section in report.get("robustness", {}).values():
        section["task_b"] = None


def _write_predictions(
    path: Path, keys: Sequence[tuple[str, int, int]], clean: Scored, predictor: Predictor
) -> None:
    """``keys``: each item's image hash, Task A and Task B label."""
    pred_a = metrics.predict_a(clean.p_ai)
    pred_b = metrics.predict_b(pred_a, clean.generator_given_ai)
    table = pa.table(
        {
            "sha256": [sha for sha, _, _ in keys],
            "label_a": [label_a for _, label_a, _ in keys],
            "label_b": [label_b for _, _, label_b in keys],
            "p_ai": clean.p_ai.astype(np.float64),
            "pred_a": pred_a,
            "pred_generator": [predictor.generators[b] for b in pred_b],
        }
    )
    pq.write_table(table, path)


def _write_figures(output: Path, report: dict[str, Any]) -> list[Path]:
    generators = report["model"]["generators"]
    confusion = report["confusion"]
    written = [
        plots.confusion_png(
            confusion["task_a"], ["human", "AI"], output / "confusion_task_a.png", "Task A"
        )
    ]
    if "task_b" in confusion:
        written.append(
            plots.confusion_png(
                confusion["task_b"], generators, output / "confusion_task_b.png", "Task B"
            )
        )
    written.append(
        plots.reliability_png(
            report["reliability"], report["ece"], output / "reliability.png", "p_ai reliability"
        )
    )
    return written

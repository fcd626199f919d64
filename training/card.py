"""The model card: ``README.md`` in a checkpoint directory, the Hugging Face convention.

YAML front matter (licence, tags, metrics, and a ``model-index`` once evaluated), then sections:
data, metrics, operating points, calibration, robustness, known limits. The trainer writes it
when it saves a checkpoint, from ``config.json`` and ``training.json``; ``aigis evaluate``
rewrites it with its report. A card holds only numbers something computed: what was not
measured is said to be missing, never filled in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import yaml

from serving.model.config import DetectorConfig
from training.data import SMOKE_SPECS

CARD_FILE: Final[str] = "README.md"
TRAINING_FILE: Final[str] = "training.json"
"""The trainer's summary beside the weights (``training.trainer.SUMMARY_FILE``)."""

_TASK_A: Final[tuple[tuple[str, str, str], ...]] = (
    ("accuracy", "accuracy", "Task A accuracy"),
    ("precision", "precision", "Task A precision"),
    ("recall", "recall", "Task A recall"),
    ("f1", "f1", "Task A F1"),
    ("f1_weighted", "f1", "Task A F1 weighted"),
    ("auroc", "roc_auc", "Task A AUROC"),
)
"""Report key, Hugging Face metric id, name."""
_VALIDATION: Final[tuple[tuple[str, str], ...]] = (
    ("f1_a", "Task A F1"),
    ("accuracy_a", "Task A accuracy"),
    ("auroc_a", "Task A AUROC"),
    ("f1_b_weighted", "Task B F1 weighted"),
    ("accuracy_b", "Task B accuracy"),
)
_RATES: Final[tuple[str, ...]] = (
    "false_positive_rate",
    "recall",
    "precision",
    "miss_rate",
    "review_rate",
)
_RANDOM_PRESETS: Final[frozenset[str]] = frozenset({"tiny", "base-random"})


def training_summary(directory: Path) -> dict[str, Any] | None:
    """The trainer's ``training.json`` in a checkpoint directory, None when it has none."""
    path = directory / TRAINING_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_card(
    directory: Path,
    config: DetectorConfig,
    training: Mapping[str, Any] | None,
    evaluation: Mapping[str, Any] | None = None,
    *,
    figures: Sequence[str] = (),
) -> Path:
    """Write ``README.md`` into ``directory``: the card of the model ``config`` describes,
    trained as ``training`` says, with ``evaluation`` (the report of
    :func:`training.evaluate.run_evaluation`) when given; ``figures`` are PNG files beside the
    card to link. Returns the card's path."""
    path = directory / CARD_FILE
    path.write_text(render_card(config, training, evaluation, figures=figures), encoding="utf-8")
    return path


def render_card(
    config: DetectorConfig,
    training: Mapping[str, Any] | None,
    evaluation: Mapping[str, Any] | None,
    *,
    figures: Sequence[str] = (),
) -> str:
    """The card's text (see the module docstring)."""
    parts = [
        "---\n" + yaml.safe_dump(_front_matter(config, evaluation), sort_keys=False) + "---",
        f"# {config.name} {config.version}",
        f"An aigis detector of AI-generated images: the `{config.architecture}` architecture "
        f"with `{config.preset}` encoders{_sources(config)}. It answers Task A (human-made or "
        "AI-generated, as the calibrated probability `p_ai`) and Task B (which generator, of "
        + ", ".join(f"`{name}`" for name in config.generators)
        + ").",
        "## Data\n\n" + _data(training, evaluation),
        "## Metrics\n\n" + _metrics(training, evaluation),
        "## Operating points\n\n" + _operating_points(config, evaluation, figures),
        "## Calibration\n\n" + _calibration(config, training, evaluation, figures),
        "## Robustness\n\n" + _robustness(evaluation),
        "## Known limits\n\n" + _limits(config, training, evaluation),
    ]
    return "\n\n".join(parts) + "\n"


def _front_matter(config: DetectorConfig, evaluation: Mapping[str, Any] | None) -> dict[str, Any]:
    matter: dict[str, Any] = {
        # The weights' terms follow their training data and encoders, which the card cannot know.
        "license": "other",
        "license_name": "unspecified",
        "pipeline_tag": "image-classification",
        "tags": [
            "aigis",
            "ai-generated-image-detection",
            config.architecture,
            f"preset-{config.preset}",
        ],
    }
    task_a = (evaluation or {}).get("task_a") or {}
    measured = [(key, hf, name) for key, hf, name in _TASK_A if task_a.get(key) is not None]
    if not measured:
        return matter
    matter["metrics"] = sorted({hf for _, hf, _ in measured})
    data = evaluation["data"] if evaluation else {}
    metrics = [
        {"type": hf, "value": round(float(task_a[key]), 4), "name": name}
        for key, hf, name in measured
    ]
    task_b = (evaluation or {}).get("task_b")
    if task_b:
        for key, hf in (("accuracy", "accuracy"), ("f1_weighted", "f1")):
            name = f"Task B {key.replace('_', ' ')}"
            metrics.append({"type": hf, "value": round(float(task_b[key]), 4), "name": name})
    matter["model-index"] = [
        {
            "name": config.name,
            "results": [
                {
                    "task": {
                        "type": "image-classification",
                        "name": "AI-generated image detection",
                    },
                    "dataset": {"name": data["spec"], "type": data["spec"], "split": data["split"]},
                    "metrics": metrics,
                }
            ],
        }
    ]
    return matter


def _sources(config: DetectorConfig) -> str:
    if not config.sources:
        return ""
    return " (" + ", ".join(f"{part}: `{name}`" for part, name in config.sources.items()) + ")"


def _data(training: Mapping[str, Any] | None, evaluation: Mapping[str, Any] | None) -> str:
    lines = []
    if training is None:
        lines.append("- Training: not recorded (no `training.json` beside the weights).")
    else:
        hyper = training.get("hyperparameters") or {}
        start = f", fine-tuned from `{training['init_from']}`" if training.get("init_from") else ""
        lines.append(
            f"- Training: `{training['data']}`{start}; {training['steps']} steps "
            f"({hyper.get('epochs', '?')} epochs at most, batch {hyper.get('batch_size', '?')}, "
            f"learning rate {hyper.get('learning_rate', '?')}), seed {training['seed']}, "
            f"{training['seconds']} s. The epoch kept is the one with the best validation "
            "Task A F1."
        )
    if evaluation is None:
        lines.append(
            "- Evaluation: none yet. `aigis evaluate --model DIR --data SPEC --output OUT` "
            "writes its metrics into this card."
        )
    else:
        data = evaluation["data"]
        extra = ""
        if data.get("holdout_classes"):
            extra += f", held-out classes {', '.join(data['holdout_classes'])} only"
        if data.get("limit"):
            extra += f", the first {data['limit']} items only"
        lines.append(
            f"- Evaluation: `{data['spec']}`, {data['split']} split, {evaluation['n']} "
            f"items{extra}; its generator list: {', '.join(data['generators'])}."
        )
    return "\n".join(lines)


def _metrics(training: Mapping[str, Any] | None, evaluation: Mapping[str, Any] | None) -> str:
    if evaluation is None:
        validation = (training or {}).get("validation") or {}
        if all(validation.get(key) is None for key, _ in _VALIDATION):
            return "Not measured."
        recorded = [[name, _num(validation.get(key))] for key, name in _VALIDATION]
        return (
            "On the validation split at the end of training (uncalibrated, `p_ai` at 0.5; Task "
            "B scored competition-style):\n\n" + _table(["metric", "value"], recorded)
        )
    task_a, task_b = evaluation["task_a"], evaluation.get("task_b")
    rows = [[name, _num(task_a.get(key))] for key, _, name in _TASK_A]
    if task_b:
        rows += [["Task B accuracy", _num(task_b["accuracy"])]]
        rows += [["Task B F1 weighted", _num(task_b["f1_weighted"])]]
    text = (
        "On the evaluation set, Task A with `p_ai` at 0.5; Task B scored competition-style (the "
        "generator counts only where Task A says AI). A dash is a metric that could not be "
        "computed (one class only).\n\n" + _table(["metric", "value"], rows)
    )
    if task_b:
        per_class = [
            [name, _num(v["precision"]), _num(v["recall"]), _num(v["f1"]), str(v["support"])]
            for name, v in task_b["per_class"].items()
        ]
        text += "\n\nTask B per class:\n\n" + _table(
            ["class", "precision", "recall", "F1", "support"], per_class
        )
    return text


def _operating_points(
    config: DetectorConfig, evaluation: Mapping[str, Any] | None, figures: Sequence[str]
) -> str:
    points = {name: point for name, point in _named_points(evaluation or {}) if point is not None}
    if not points:
        return (
            f"The checkpoint's bands are human <= {config.human_threshold}, AI >= "
            f"{config.ai_threshold} (`config.json`); the worker's settings decide which bands "
            "serve. Their rates are not measured until `aigis evaluate` runs."
        )
    header = ["bands", "human <=", "AI >=", "false-positive rate", "recall", "precision"]
    header += ["miss rate", "review rate"]
    rows = [
        [name, _num(p["human_threshold"], 2), _num(p["ai_threshold"], 2)]
        + [_num(p[rate]) for rate in _RATES]
        for name, p in points.items()
    ]
    text = (
        "Rates of the bands configured when the evaluation ran (`AIGIS_WORKER__HUMAN_THRESHOLD`"
        " / `AI_THRESHOLD`, and `AIGIS_WORKER__BANDS_BY_SOURCE`), over the whole evaluation "
        "set: false positives are human-made images called AI, over human-made images; review "
        "is the share between the bands.\n\n" + _table(header, rows)
    )
    single = evaluation.get("thresholds") if evaluation else None
    if single:
        text += (
            "\n\nOne AI threshold at a time, the human band as served (every pair is in "
            "`thresholds.csv` beside the evaluation's `metrics.json`):\n\n"
            + _table(
                header[1:],
                [
                    [_num(p["human_threshold"], 2), _num(p["ai_threshold"], 2)]
                    + [_num(p[rate]) for rate in _RATES]
                    for p in single
                ],
            )
        )
    return text + _figures(figures, ("roc.png", "precision_recall.png", "det.png"))


def _named_points(evaluation: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    yield "worker", evaluation.get("operating_point")
    for source, point in (evaluation.get("operating_points_by_source") or {}).items():
        yield f"source `{source}`", point


def _calibration(
    config: DetectorConfig,
    training: Mapping[str, Any] | None,
    evaluation: Mapping[str, Any] | None,
    figures: Sequence[str],
) -> str:
    t = f"{config.temperature:.4f}"
    text = f"Temperature {t}: `p_ai = sigmoid(logit_a / {t})`"
    if training is None:
        text += " (`config.json`; how it was fitted is not recorded here)."
    else:
        text += ", fitted on the validation split after training by minimising the NLL."
    validation = (training or {}).get("validation") or {}
    if "nll_a" in validation and "nll_a_calibrated" in validation:
        text += (
            f" Validation NLL of Task A: {_num(validation['nll_a'])} before, "
            f"{_num(validation['nll_a_calibrated'])} after."
        )
    if evaluation is not None:
        text += (
            f" Expected calibration error on the evaluation set: {_num(evaluation['ece'])} "
            "(15 equal bins)."
        )
    return text + _figures(figures, ("reliability.png",))


def _robustness(evaluation: Mapping[str, Any] | None) -> str:
    sections = (evaluation or {}).get("robustness")
    if not sections:
        return "Not measured (no evaluation yet, or it ran with `--no-robustness`)."
    rows = [
        [
            name,
            _num(section["task_a"].get("recall")),
            _num(section["task_a"].get("f1")),
            _num(section["task_a"].get("auroc")),
            _num((section.get("task_b") or {}).get("f1_weighted")),
            _num(section["ece"]),
        ]
        for name, section in {"clean": evaluation, **sections}.items()
    ]
    return "Every evaluation image, real and AI alike, under each degradation:\n\n" + _table(
        ["copy", "Task A recall", "Task A F1", "Task A AUROC", "Task B F1 weighted", "ECE"], rows
    )


def _limits(
    config: DetectorConfig, training: Mapping[str, Any] | None, evaluation: Mapping[str, Any] | None
) -> str:
    lines = []
    if config.preset in _RANDOM_PRESETS:
        lines.append(
            f"The `{config.preset}` preset starts its encoders from random weights: a model "
            "for testing the pipeline, not a detector of real images."
        )
    specs = {(training or {}).get("data"), ((evaluation or {}).get("data") or {}).get("spec")}
    if any(str(spec).partition(":")[0] in SMOKE_SPECS for spec in specs if spec):
        lines.append(
            "The smoke set's generators are simulated fingerprints, far easier to spot than "
            "real generators' traces: a good score on it says the code works, nothing about "
            "real images."
        )
    if evaluation is not None:
        lines.append(
            "Every number is of the one evaluation set named under Data; another source of "
            "images, or other generators, can score very differently."
        )
        if evaluation.get("operating_points_by_source"):
            lines.append(
                "Evaluation items carry no source: the rates at a source's bands are over the "
                "whole evaluation set, not over that source's traffic."
            )
        if (evaluation.get("data") or {}).get("holdout_classes"):
            lines.append("A held-out evaluation scores Task A only, on the held-out classes.")
    lines.append(
        "Task B names only the generators listed above; an image from any other generator "
        "is attributed to one of them, or to `unknown` when no generator reaches "
        f"{config.generator_min_confidence}."
    )
    lines.append(
        "This card is rewritten by the trainer, by each `aigis evaluate --model` of this "
        "checkpoint and by the retraining cycle that promotes it: it shows the latest "
        "evaluation only."
    )
    lines.append(
        "Licence: `other`. aigis's code is Apache-2.0; the weights' terms follow the data "
        "and the pre-trained encoders they were trained from."
    )
    return "\n".join(f"- {line}" for line in lines)


def _figures(figures: Sequence[str], wanted: Sequence[str]) -> str:
    shown = [name for name in wanted if name in figures]
    return "".join(f"\n\n![{name.removesuffix('.png')}]({name})" for name in shown)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _num(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"

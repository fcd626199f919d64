"""``aigis evaluate`` and ``aigis pseudo-label``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from aigis.cli.common import fail, settings, table_console

if TYPE_CHECKING:
    from serving.model.predictor import Predictor

_DATA_HELP = "smoke, a CT2 parquet directory, an image folder, or a label-store URL."
# Options both commands take, declared once.
_MODEL = typer.Option(..., "--model", "-m", help="Checkpoint directory.")
_BATCH_SIZE = typer.Option(32, "--batch-size", min=1, help="Images per forward pass.")
_DEVICE = typer.Option(None, "--device", help="cpu or cuda [default: auto].")
_THREADS = typer.Option(
    None, "--threads", min=1, help="CPU threads for torch [default: one per core]."
)


def register(app: typer.Typer) -> None:
    @app.command(
        help=(
            "Evaluate a trained detector on a data set: print a table, write metrics.json "
            "(Task A, Task B scored competition-style, ECE, the same under each degradation of "
            "--degradations applied to real and AI images alike, the rates of the worker's bands "
            "and each source's), predictions.parquet, "
            "thresholds.csv (every band pair's rates), confusion matrices, a reliability "
            "diagram, ROC, precision-recall and DET curves, and a model card (README.md), "
            "which also replaces the card in the --model checkpoint unless --no-card."
        )
    )
    def evaluate(
        model: Path = _MODEL,
        data: str = typer.Option(..., "--data", help=_DATA_HELP),
        output: Path = typer.Option(..., "--output", "-o", help="Directory for the results."),
        split: str = typer.Option("test", "--split", help="train, validation or test."),
        holdout_classes: str | None = typer.Option(
            None,
            "--holdout-classes",
            help="Comma-separated classes held out of training (generator names or groups, "
            "e.g. cat): score Task A on those items only.",
        ),
        robustness: bool = typer.Option(
            True,
            "--robustness/--no-robustness",
            help="Also score every image under each degradation (one more pass each).",
        ),
        degradations: str = typer.Option(
            "all",
            "--degradations",
            help="The degradations --robustness applies, comma-separated: jpeg_q95, jpeg_q75, "
            "jpeg_q50, resize_50, resize_25, crop, webp, screenshot, noise; formats (the "
            "re-encodes) or all.",
        ),
        batch_size: int = _BATCH_SIZE,
        limit: int | None = typer.Option(None, "--limit", min=1, help="Score the first N only."),
        card: bool = typer.Option(
            True, "--card/--no-card", help="Rewrite the model card (README.md) in --model."
        ),
        device: str | None = _DEVICE,
        threads: int | None = _THREADS,
    ) -> None:
        from schemas.errors import AigisError
        from training.degrade import pick
        from training.evaluate import run_evaluation

        worker = settings().worker
        sources = {name: worker.bands_for(name) for name in worker.bands_by_source}
        classes = [name for name in (holdout_classes or "").split(",") if name.strip()]
        try:
            chosen = list(pick(degradations))
        except ValueError as err:
            fail(f"aigis evaluate: --degradations: {err}", 2)
        try:
            predictor = _predictor(model, device, batch_size, threads)
            report = run_evaluation(
                predictor,
                data,
                output,
                split=split,
                holdout_classes=classes,
                robustness=robustness,
                degradations=chosen,
                batch_size=batch_size,
                limit=limit,
                bands=(worker.human_threshold, worker.ai_threshold),
                source_bands={k: (b.human_threshold, b.ai_threshold) for k, b in sources.items()},
                checkpoint=model,
            )
        except AigisError as err:
            fail(f"aigis evaluate: {err}")
        _print_report(report)
        typer.echo(
            f"wrote {output}/metrics.json, predictions.parquet, thresholds.csv, figures and "
            "README.md"
        )
        if card:
            _rewrite_card(model, predictor, report)

    @app.command(
        "pseudo-label",
        help=(
            "Label a data set with a trained detector and keep the items it is confident about "
            "on both tasks (the paper's pseudo-labelling step), capped per class and split 8:2 "
            "into train and validation, as CT2 parquet that `aigis train --data` reads."
        ),
    )
    def pseudo_label(
        model: Path = _MODEL,
        data: str = typer.Option(..., "--data", help=_DATA_HELP + " Labels are not needed."),
        output: Path = typer.Option(..., "--output", "-o", help="Directory to write."),
        threshold: float | None = typer.Option(
            None,
            "--threshold",
            min=0.0,
            max=1.0,
            help="Minimum Task A and Task B confidence [default: retrain.pseudo_label_threshold].",
        ),
        max_per_class: int | None = typer.Option(
            None, "--max-per-class", min=1, help="Cap per class [default: retrain.max_per_class]."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the caps and the 8:2 split."),
        split: str = typer.Option("all", "--split", help="all, train, validation or test."),
        batch_size: int = _BATCH_SIZE,
        device: str | None = _DEVICE,
        threads: int | None = _THREADS,
    ) -> None:
        from schemas.errors import AigisError
        from training.pseudolabel import pseudo_label as run_pseudo_label
        from training.pseudolabel import write_pseudo_labels

        retrain = settings().retrain
        try:
            predictor = _predictor(model, device, batch_size, threads)
            result = run_pseudo_label(
                predictor,
                data,
                threshold=retrain.pseudo_label_threshold if threshold is None else threshold,
                max_per_class=max_per_class or retrain.max_per_class,
                seed=seed,
                split=split,
                batch_size=batch_size,
            )
            write_pseudo_labels(result, output, predictor.generators)
        except AigisError as err:
            fail(f"aigis pseudo-label: {err}")
        summary = result.summary
        typer.echo(
            f"kept {summary['kept']} of {summary['source']['items']} items "
            f"({summary['confident']} confident): {summary['per_class']}; "
            f"wrote {summary['train']} train and {summary['validation']} validation to {output}"
        )


def _predictor(model: Path, device: str | None, batch_size: int, threads: int | None) -> Predictor:
    import torch

    from serving.model.predictor import Predictor

    if threads is not None:
        torch.set_num_threads(threads)
    return Predictor.from_checkpoint(model, device=device, max_batch=batch_size)


def _rewrite_card(model: Path, predictor: Predictor, report: dict[str, Any]) -> None:
    from training.card import training_summary, write_card

    try:
        path = write_card(model, predictor.checkpoint.config, training_summary(model), report)
    except OSError as err:  # a read-only checkpoint: the results above are written all the same
        fail(f"aigis evaluate: the model card in {model} was not rewritten ({err}); pass --no-card")
    typer.echo(f"rewrote the model card {path}")


def _print_report(report: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = table_console()
    data, model = report["data"], report["model"]
    title = f"{model['name']} {model['version']} on {data['spec']}, {data['split']} split"
    if data["holdout_classes"]:
        title += f", held-out classes {', '.join(data['holdout_classes'])}"
    title = escape(f"{title}, n={report['n']}")  # a spec may hold [brackets]
    sections = {"clean": report, **report.get("robustness", {})}
    table = Table(title=title)
    table.add_column("images")
    rows: list[tuple[str, str, str]] = [
        ("A accuracy", "task_a", "accuracy"),
        ("A precision", "task_a", "precision"),
        ("A recall", "task_a", "recall"),
        ("A F1", "task_a", "f1"),
        ("A AUROC", "task_a", "auroc"),
        ("B accuracy", "task_b", "accuracy"),
        ("B F1 w.", "task_b", "f1_weighted"),
    ]
    shown = [
        row
        for row in rows
        if any((section.get(row[1]) or {}).get(row[2]) is not None for section in sections.values())
    ]
    for label, _, _ in shown:
        table.add_column(label, justify="right")
    table.add_column("ECE", justify="right")
    for name, section in sections.items():
        values = [(section.get(task) or {}).get(key) for _, task, key in shown]
        table.add_row(name, *(_number(value) for value in values), _number(section["ece"]))
    console.print(table)
    if report.get("task_b"):
        per_class = Table(title="Task B per class (clean)")
        for column in ("class", "precision", "recall", "F1", "support"):
            per_class.add_column(column, justify="left" if column == "class" else "right")
        for name, values in report["task_b"]["per_class"].items():
            per_class.add_row(
                name,
                _number(values["precision"]),
                _number(values["recall"]),
                _number(values["f1"]),
                str(values["support"]),
            )
        console.print(per_class)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"

"""``aigis thresholds``: what the decision bands cost on a labelled hold-out, and which bands to
serve."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from aigis.cli.common import fail, settings, table_console

if TYPE_CHECKING:
    from training.thresholds import OperatingPoint

_PREDICTIONS = typer.Option(
    ...,
    "--predictions",
    "-p",
    help="predictions.parquet written by `aigis evaluate` (or its output directory), on the "
    "gold hold-out: true labels and p_ai per image.",
)


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Operating points: rates per band pair on a labelled hold-out, and a suggestion.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    app.add_typer(group, name="thresholds")

    @group.command(help="Print the rates of the AI threshold at each step (human band fixed).")
    def sweep(
        predictions: Path = _PREDICTIONS,
        output: Path | None = typer.Option(
            None, "--output", "-o", help="Also write every band pair's rates to this CSV file."
        ),
        step: float = typer.Option(0.05, "--step", min=0.01, max=0.5, help="Rows to print."),
    ) -> None:
        from rich.table import Table

        from training.thresholds import single_thresholds, write_csv
        from training.thresholds import sweep as run_sweep

        loaded = settings()
        points = run_sweep(*_read(predictions))
        table = Table("human ≤", "AI ≥", "FPR", "recall", "precision", "miss", "review")
        for p in single_thresholds(points, loaded.worker.human_threshold, step):
            table.add_row(*_cells(p))
        table_console().print(table)
        if output is not None:
            write_csv(points, output)
            typer.echo(f"wrote {len(points)} band pairs to {output}")

    @group.command(help="Print the bands that meet a false-positive and a review-rate limit.")
    def suggest(
        predictions: Path = _PREDICTIONS,
        max_fpr: float = typer.Option(..., "--max-fpr", min=0.0, max=1.0),
        max_review_rate: float = typer.Option(..., "--max-review-rate", min=0.0, max=1.0),
    ) -> None:
        from training.thresholds import at
        from training.thresholds import suggest as pick
        from training.thresholds import sweep as run_sweep

        loaded = settings()
        points = run_sweep(*_read(predictions))
        serving = at(points, loaded.worker.human_threshold, loaded.worker.ai_threshold)
        if serving is not None:
            typer.echo("serving now:  " + _describe(serving))
        best = pick(points, max_fpr=max_fpr, max_review_rate=max_review_rate)
        if best is None:
            fail(
                f"no band pair has a false-positive rate at most {max_fpr} and a review rate at "
                f"most {max_review_rate} on these {len(_read(predictions)[0])} images; allow "
                "more review or more false positives"
            )
        typer.echo("suggested:    " + _describe(best))
        typer.echo(
            f"AIGIS_WORKER__HUMAN_THRESHOLD={best.human_threshold:.2f} "
            f"AIGIS_WORKER__AI_THRESHOLD={best.ai_threshold:.2f}"
        )


def _read(path: Path) -> tuple[list[float], list[int]]:
    import pyarrow.parquet as pq

    file = path / "predictions.parquet" if path.is_dir() else path
    if not file.is_file():
        fail(f"{file} does not exist; run `aigis evaluate --output DIR` on the gold hold-out first")
    table = pq.read_table(file, columns=["p_ai", "label_a"])
    labels = table.column("label_a").to_pylist()
    if any(label not in (0, 1) for label in labels):
        fail(f"{file} has rows without a Task A label (0 or 1); evaluate on labelled data")
    return table.column("p_ai").to_pylist(), labels


def _cells(p: OperatingPoint) -> list[str]:
    d = p.as_dict()
    return [
        f"{d['human_threshold']:.2f}",
        f"{d['ai_threshold']:.2f}",
        f"{d['false_positive_rate']:.4f}",
        f"{d['recall']:.4f}",
        f"{d['precision']:.4f}",
        f"{d['miss_rate']:.4f}",
        f"{d['review_rate']:.4f}",
    ]


def _describe(p: OperatingPoint) -> str:
    h, a, fpr, recall, precision, miss, review = _cells(p)
    return (
        f"human <= {h}, AI >= {a}: false-positive rate {fpr}, recall {recall}, "
        f"precision {precision}, miss rate {miss}, review rate {review}"
    )

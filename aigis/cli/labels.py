"""``aigis sink`` and ``aigis retrain``."""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING

import typer

from aigis.cli.common import fail, settings
from schemas.errors import AigisError
from schemas.settings import Settings

if TYPE_CHECKING:
    from aigis.retrain import RetrainOptions


def register(app: typer.Typer) -> None:
    @app.command(help="Store pseudo-labels and review decisions in the label store.")
    def sink(
        idle_exit: float | None = typer.Option(
            None,
            "--idle-exit",
            metavar="SECONDS",
            help="Flush and exit once nothing has arrived for this long (batch use).",
        ),
    ) -> None:
        from worker.runtime.signals import install_stop_handlers
        from worker.sink import run_sink

        loaded = settings()
        stop = threading.Event()
        install_stop_handlers(stop)
        try:
            run_sink(loaded, stop, idle_exit_s=idle_exit)
        except AigisError as err:
            fail(f"aigis sink: {err}")

    @app.command(
        help=(
            "Retrain from the label store and promote the result only if it beats the model in "
            "service on the gold hold-out. One cycle, or one every --every."
        )
    )
    def retrain(
        data: str | None = typer.Option(
            None,
            "--data",
            help="Base training data (smoke, a CT2 parquet directory, an image folder) "
            "(default: AIGIS_RETRAIN__BASE_DATA).",
        ),
        holdout: str | None = typer.Option(
            None,
            "--holdout",
            help="Data set whose test split, with the store's human decisions, is the gold "
            "hold-out (default: AIGIS_RETRAIN__HOLDOUT, else --data).",
        ),
        every: str | None = typer.Option(
            None, "--every", metavar="DURATION", help="Run a cycle every DURATION (6h, 30m, 1d)."
        ),
        epochs: float | None = typer.Option(None, "--epochs", min=0.01),
        max_steps: int | None = typer.Option(None, "--max-steps", min=1),
        batch_size: int | None = typer.Option(None, "--batch-size", min=1),
        lr: float | None = typer.Option(None, "--lr", min=0.0),
        threads: int | None = typer.Option(None, "--threads", min=1),
        force: bool = typer.Option(
            False, "--force", help="Retrain even when the store has not changed since last time."
        ),
        add_generator: str | None = typer.Option(
            None,
            "--add-generator",
            metavar="NAME",
            help="Grow the label set by generator NAME (family/model allowed), trained on the "
            "human decisions naming it; refused until AIGIS_RETRAIN__MIN_EXAMPLES_NEW_GENERATOR "
            "of them exist. One cycle only (not with --every).",
        ),
    ) -> None:
        from aigis.retrain import RetrainOptions

        loaded = settings()
        config = loaded.retrain
        base = data or config.base_data
        if base is None:
            fail("aigis retrain: give --data (or set AIGIS_RETRAIN__BASE_DATA)")
        options = RetrainOptions(
            base=base,
            holdout=holdout or config.holdout,
            epochs=epochs if epochs is not None else config.epochs,
            max_steps=max_steps if max_steps is not None else config.max_steps,
            batch_size=batch_size,
            learning_rate=lr,
            threads=threads,
            force=force,
            add_generator=add_generator,
        )
        if every is not None and add_generator is not None:
            fail("aigis retrain: --add-generator runs one cycle; drop --every")
        if every is None:
            if not _cycle(loaded, options):
                raise typer.Exit(1)
            return
        interval = parse_duration(every)
        stop = threading.Event()
        from worker.runtime.signals import install_stop_handlers

        install_stop_handlers(stop)
        while not stop.is_set():
            _cycle(loaded, options)
            typer.echo(f"next cycle in {every} (SIGTERM or Ctrl+C to stop)")
            stop.wait(interval)


def _cycle(loaded: Settings, options: RetrainOptions) -> bool:
    """Run one retraining cycle and print its decision; False when it failed."""
    from aigis.retrain import run_cycle

    try:
        result = run_cycle(loaded, options)
    except AigisError as err:
        typer.secho(f"aigis retrain: {err}", err=True, fg=typer.colors.RED)
        return False
    typer.echo(result.describe())
    return True


def parse_duration(text: str) -> float:
    """Seconds in ``text`` such as ``6h``, ``30m``, ``1h30m``, ``90s`` or ``1d``."""
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower():
        fail(f"cannot read the duration {text!r}; write it like 6h, 30m, 1h30m or 1d")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        fail("the interval must be longer than zero")
    return seconds


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

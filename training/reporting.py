"""What a training run reports while it runs and leaves behind: progress lines, the integrations
of ``report_to`` (TensorBoard event files under ``<output>/runs/``), and the loss and metric curves
as PNG in the run directory.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from transformers import Trainer
from transformers.integrations import INTEGRATION_TO_CALLBACK, TensorBoardCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from schemas.errors import AigisError
from training import plots

RUNS_DIR: Final[str] = "runs"
"""Sub-directory of the output that holds TensorBoard's event files."""
TENSORBOARD: Final[str] = "tensorboard"


class ReportError(AigisError):
    """``report_to`` names something that cannot be reported to here."""


def tensorboard_installed() -> bool:
    return importlib.util.find_spec(TENSORBOARD) is not None


def resolve_report_to(report_to: str) -> list[str]:
    """The integrations a ``report_to`` setting means: ``auto`` is TensorBoard when installed
    (else none), ``none`` is none, anything else a comma-separated list of names.

    Raises ReportError for a name transformers does not know, and when TensorBoard is asked
    for and not installed. (Another integration that is not installed fails when training
    starts, with transformers' message.)
    """
    names = [name.strip().lower() for name in report_to.split(",") if name.strip()]
    if names in ([], ["none"]):
        return []
    if names == ["auto"]:
        return [TENSORBOARD] if tensorboard_installed() else []
    if "auto" in names or "none" in names:
        raise ReportError(
            f"report_to {report_to!r}: 'auto' and 'none' stand alone; give one of them or a "
            "list of integrations such as tensorboard,mlflow"
        )
    unknown = [name for name in names if name not in INTEGRATION_TO_CALLBACK]
    if unknown:
        raise ReportError(
            f"report_to {report_to!r}: unknown integration(s) {', '.join(unknown)}; give auto, "
            f"none, or some of {', '.join(sorted(INTEGRATION_TO_CALLBACK))}"
        )
    if TENSORBOARD in names and not tensorboard_installed():
        raise ReportError(
            "report_to names tensorboard but the tensorboard package is not installed: "
            "install it (pip install tensorboard) or set AIGIS_TRAINING__REPORT_TO=none"
        )
    return names


def others(integrations: Sequence[str]) -> list[str] | str:
    """``report_to`` for TrainingArguments: every integration except TensorBoard, which
    :func:`attach` wires to the output directory itself (the Trainer's own would write into
    the working states that a finished run deletes)."""
    rest = [name for name in integrations if name != TENSORBOARD]
    return rest or "none"


def attach(trainer: Trainer, integrations: Sequence[str], output: Path) -> None:
    """One line per evaluation instead of the stock printouts, and TensorBoard event files
    under ``output/runs/`` (rank 0 only) when ``integrations`` name it."""
    # The stock callbacks print every logging step's dict (sixty of them in a short run);
    # without bars (not a terminal) the training summary line is enough.
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(_EvaluationLines)
    trainer.remove_callback(PrinterCallback)
    if TENSORBOARD in integrations and trainer.is_world_process_zero():
        from torch.utils.tensorboard import SummaryWriter

        trainer.add_callback(TensorBoardCallback(SummaryWriter(log_dir=str(output / RUNS_DIR))))


def write_curves(trainer: Trainer, output: Path) -> list[Path]:
    """``loss.png`` and ``metrics.png`` of the whole run (a resumed run's earlier epochs
    included: they are in the restored state's log history)."""
    return plots.training_curves_png(trainer.state.log_history, output)


class _EvaluationLines(ProgressCallback):
    """The progress bars, with one line per evaluation instead of a dict per logging step."""

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        scores = {
            k.removeprefix("eval_"): v for k, v in (logs or {}).items() if k.startswith("eval_")
        }
        if state.is_world_process_zero and scores and self.training_bar is not None:
            shown = "  ".join(f"{k} {v:.4g}" for k, v in scores.items() if isinstance(v, float))
            self.training_bar.write(f"epoch {state.epoch or 0:.0f}: {shown}")

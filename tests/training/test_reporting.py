"""Training that reports: report_to, TensorBoard event files, PNG curves, resuming a broken run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

from training import reporting
from training import trainer as trainer_module
from training.data import Sample, load_split
from training.plots import training_curves_png
from training.reporting import ReportError, resolve_report_to
from training.trainer import TrainRequest, train

TRAIN_ITEMS, VALIDATION_ITEMS, BATCH = 48, 16, 8
"""Six steps an epoch: the Trainer logs the training loss every ten steps."""
STEPS_PER_EPOCH = TRAIN_ITEMS // BATCH


@pytest.mark.unit
def test_report_to_auto_none_and_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_report_to("auto") == ["tensorboard"]  # installed with the train extra
    assert resolve_report_to("none") == []
    assert resolve_report_to(" NONE ") == []
    assert resolve_report_to("tensorboard, mlflow") == ["tensorboard", "mlflow"]
    with pytest.raises(ReportError, match="stand alone"):
        resolve_report_to("auto,tensorboard")
    with pytest.raises(ReportError, match=r"unknown integration.*tensorbored"):
        resolve_report_to("tensorbored")
    monkeypatch.setattr(reporting, "tensorboard_installed", lambda: False)
    assert resolve_report_to("auto") == []
    with pytest.raises(ReportError, match="AIGIS_TRAINING__REPORT_TO=none"):
        resolve_report_to("tensorboard")


@pytest.mark.unit
def test_cli_refuses_bad_reporting_and_augmentation_settings(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from aigis.cli import app
    from schemas.settings import load_settings

    args = ["train", "--data", "smoke", "-o", str(tmp_path / "m")]
    result = CliRunner().invoke(app, [*args, "--report-to", "tensorbored"])
    assert result.exit_code == 1
    assert "unknown integration(s) tensorbored" in result.output
    monkeypatch.setenv("AIGIS_TRAINING__AUGMENT_DEGRADATIONS", "jpeg_q75,sepia")
    load_settings.cache_clear()  # read the environment afresh, and again after the test
    request.addfinalizer(load_settings.cache_clear)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "sepia" in result.output
    assert not (tmp_path / "m").exists()


@pytest.mark.unit
def test_curves_are_drawn_from_the_log_history(tmp_path: Path) -> None:
    history: list[dict[str, Any]] = [
        {"loss": 2.1, "step": 2},
        {"loss": 1.7, "step": 4},
        {"eval_loss": 1.5, "eval_f1_a": 0.6, "eval_accuracy_a": 0.55, "step": 4},
        {"loss": float("nan"), "step": 6},  # a diverged step is skipped, not drawn
        {"eval_loss": 1.2, "eval_f1_a": 0.8, "eval_accuracy_a": 0.75, "step": 8},
        {"train_runtime": 3.0, "step": 8},
    ]
    written = training_curves_png(history, tmp_path)
    assert [path.name for path in written] == ["loss.png", "metrics.png"]
    for path in written:
        assert path.read_bytes().startswith(b"\x89PNG")
    assert training_curves_png([{"train_runtime": 1.0, "step": 0}], tmp_path / "none") == []
    assert not (tmp_path / "none").exists()


def _small_smoke(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the trainer read a slice of smoke, so the Trainer's own loop runs in seconds."""
    sizes = {"train": TRAIN_ITEMS, "validation": VALIDATION_ITEMS}

    def sliced(spec: str, split: str) -> Sequence[Sample]:
        return list(load_split(spec, split))[: sizes[split]]

    monkeypatch.setattr(trainer_module, "load_split", sliced)


def _request(output: Path, **changes: Any) -> TrainRequest:
    fields: dict[str, Any] = {
        "data": "smoke",
        "output": output,
        "batch_size": BATCH,
        "epochs": 2,
        "progress": False,
        **changes,
    }
    return TrainRequest(**fields)


def _scalars(runs: Path) -> dict[str, list[int]]:
    """Steps of every scalar tag in the TensorBoard event files under ``runs``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps: dict[str, list[int]] = {}
    for events in sorted(runs.glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            steps.setdefault(tag, []).extend(e.step for e in accumulator.Scalars(tag))
    return steps


@pytest.mark.slow
def test_a_run_writes_tensorboard_events_and_curves(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _small_smoke(monkeypatch)
    train(_request(tmp_path / "tb", report_to="tensorboard", augment=False))
    scalars = _scalars(tmp_path / "tb" / reporting.RUNS_DIR)
    assert {"train/loss", "eval/f1_a", "eval/loss"} <= set(scalars)
    assert scalars["train/loss"] == [10]
    assert sorted(scalars["eval/f1_a"]) == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    for name in ("loss.png", "metrics.png"):
        assert (tmp_path / "tb" / name).read_bytes().startswith(b"\x89PNG")
    assert not (tmp_path / "tb" / "trainer-state").exists()

    train(_request(tmp_path / "quiet", report_to="none", augment=False))
    assert not (tmp_path / "quiet" / reporting.RUNS_DIR).exists()
    assert (tmp_path / "quiet" / "loss.png").is_file()  # curves are drawn whatever report_to says


class _InterruptedError(Exception):
    """Stands for a killed process: raised once the first epoch's state is saved."""


class _CrashAfterFirstSave(TrainerCallback):
    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        raise _InterruptedError(state.global_step)


class _FirstStep(TrainerCallback):
    def __init__(self) -> None:
        self.first: int | None = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.first is None:
            self.first = state.global_step


@pytest.mark.slow
def test_an_interrupted_run_resumes_where_it_stopped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _small_smoke(monkeypatch)
    with pytest.raises(_InterruptedError):
        train(_request(tmp_path, report_to="tensorboard", callbacks=(_CrashAfterFirstSave(),)))
    assert not (tmp_path / "model.safetensors").exists()  # nothing written but the state
    assert (tmp_path / "trainer-state" / f"checkpoint-{STEPS_PER_EPOCH}").is_dir()

    first_step = _FirstStep()
    result = train(
        _request(tmp_path, report_to="tensorboard", resume=True, callbacks=(first_step,))
    )
    # The second process ran the second epoch only: its first step is the one after the save.
    assert first_step.first == STEPS_PER_EPOCH + 1
    assert result.steps == 2 * STEPS_PER_EPOCH
    assert json.loads((tmp_path / "training.json").read_text())["steps"] == 2 * STEPS_PER_EPOCH
    assert (tmp_path / "model.safetensors").is_file()
    # Both processes' events are in runs/, one evaluation per epoch in all.
    scalars = _scalars(tmp_path / reporting.RUNS_DIR)
    assert sorted(scalars["eval/f1_a"]) == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    assert (tmp_path / "metrics.png").is_file()

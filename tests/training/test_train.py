"""The trainer: defaults, metrics, calibration, resuming, fine-tuning, and learning on smoke."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import EvalPrediction
from typer.testing import CliRunner

from aigis.cli import app
from serving.model.checkpoint import save_checkpoint
from serving.model.presets import build_preset
from training import trainer as trainer_module
from training.calibration import binary_nll, fit_temperature
from training.collate import DetectorCollator, SampleDataset
from training.data import Sample, load_split
from training.hyperparams import default_hyperparameters, with_overrides
from training.trainer import TrainingError, TrainRequest, task_metrics, train


@pytest.mark.unit
def test_paper_defaults_and_overrides() -> None:
    fused = default_hyperparameters("fused", "base")
    assert (fused.optimizer, fused.learning_rate, fused.weight_decay) == ("adamw", 2e-5, 0.01)
    assert (fused.batch_size, fused.epochs) == (256, 8)
    assert default_hyperparameters("clip-linear", "base-random").optimizer == "adam"
    assert default_hyperparameters("clip-linear", "base").epochs == 12
    contrastive = default_hyperparameters("clip-contrastive", "base")
    assert (contrastive.learning_rate, contrastive.batch_size, contrastive.epochs) == (1e-5, 32, 5)
    changed = with_overrides(fused, learning_rate=1e-4, epochs=2)
    assert (changed.learning_rate, changed.epochs, changed.batch_size) == (1e-4, 2, 256)
    with pytest.raises(ValueError, match="architecture"):
        default_hyperparameters("resnet", "tiny")


@pytest.mark.unit
def test_task_metrics_score_task_b_competition_style() -> None:
    logits_a = np.array([2.0, -2.0, 3.0, -1.0])  # AI, human, AI, human
    logits_b = np.array([[9, 0, 5, 0], [0, 4, 0, 0], [0, 0, 0, 7], [0, 0, 1, 0]], np.float32)
    labels_a = np.array([1, 1, 1, 0])
    labels_b = np.array([2, 1, 3, 0])
    got = task_metrics(EvalPrediction((logits_a, logits_b), (labels_a, labels_b)))
    # A: TP 2, FN 1, FP 0 -> F1 0.8. B: predicted [2 (real logit ignored), 0 (human), 3, 0].
    assert got["f1_a"] == pytest.approx(0.8)
    assert got["accuracy_a"] == pytest.approx(0.75)
    assert got["accuracy_b"] == pytest.approx(0.75)


@pytest.mark.unit
def test_temperature_fit_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0.0, 2.0, 20_000)
    labels = (rng.random(true_logits.size) < 1 / (1 + np.exp(-true_logits))).astype(int)
    overconfident = 3.0 * true_logits
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(3.0, rel=0.05)
    assert binary_nll(overconfident, labels, temperature) < binary_nll(overconfident, labels)
    assert fit_temperature(np.array([1.0, 2.0]), np.array([1, 1])) == 1.0


def _fixed_batch(
    architecture: str, count: int = 8
) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    built = build_preset("tiny", architecture)
    samples = load_split("smoke", "train")
    dataset = SampleDataset([samples[i] for i in range(count)], augment=False)
    batch = DetectorCollator(built.preprocessor)([dataset[i] for i in range(count)])
    return built.model, batch


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models train fastest on one thread (as the trainer does for them); restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("architecture", ["fused", "clip-linear", "clip-contrastive"])
def test_each_architecture_learns_on_smoke(architecture: str) -> None:
    torch.manual_seed(0)
    model, batch = _fixed_batch(architecture)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def _small_smoke(monkeypatch: pytest.MonkeyPatch, train_items: int, validation_items: int) -> None:
    """Make the trainer read a slice of smoke, so the Trainer's own loop runs in seconds."""
    sizes = {"train": train_items, "validation": validation_items}

    def sliced(spec: str, split: str) -> Sequence[Sample]:
        return list(load_split(spec, split))[: sizes[split]]

    monkeypatch.setattr(trainer_module, "load_split", sliced)


@pytest.mark.slow
def test_resume_continues_from_the_saved_state(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _small_smoke(monkeypatch, 32, 16)
    common = {
        "data": "smoke",
        "output": tmp_path,
        "preset": "tiny",
        "batch_size": 8,
        "epochs": 2,
        "progress": False,
        "keep_state": True,
    }
    threads = torch.get_num_threads()
    first = train(TrainRequest(**common, max_steps=4))  # type: ignore[arg-type]
    assert first.steps == 4
    assert torch.get_num_threads() == threads  # tiny trains on one thread, then gives it back
    assert (tmp_path / "trainer-state" / "checkpoint-4").is_dir()
    second = train(TrainRequest(**common, max_steps=8, resume=True))  # type: ignore[arg-type]
    assert second.steps == 8
    summary = json.loads((tmp_path / "training.json").read_text())
    assert summary["steps"] == 8
    assert summary["architecture"] == "fused"


@pytest.mark.unit
def test_resume_without_saved_state_says_so(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="no saved training state"):
        trainer_module._resume_point(TrainRequest("smoke", tmp_path, resume=True), tmp_path / "x")


@pytest.mark.unit
def test_init_from_must_match_architecture_and_generators(tmp_path: Path) -> None:
    built = build_preset("tiny", "clip-linear", generators=("real", "fake"))
    save_checkpoint(built.model, built.tokenizer, built.image_processor, built.config, tmp_path)
    request = TrainRequest("smoke", tmp_path / "out", architecture="fused", init_from=tmp_path)
    with pytest.raises(TrainingError, match="clip-linear"):
        trainer_module._initial_components(request, ("real", "fake"))
    request = TrainRequest("smoke", tmp_path / "out", architecture=None, init_from=tmp_path)
    with pytest.raises(TrainingError, match="generators"):
        trainer_module._initial_components(request, ("real", "sd21", "sdxl"))
    loaded = trainer_module._initial_components(request, ("real", "fake"))
    assert loaded.config.architecture == "clip-linear"
    assert loaded.model.training


@pytest.mark.unit
def test_cli_refuses_unknown_choices(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--data", "smoke", "-o", str(tmp_path), "--arch", "vit"])
    assert result.exit_code == 2
    assert "fused" in result.output
    result = runner.invoke(app, ["train", "--data", "smoke", "-o", str(tmp_path), "--preset", "xl"])
    assert result.exit_code == 2


@pytest.mark.slow
def test_trained_tiny_fused_beats_chance_on_the_smoke_test_split(trained_tiny: Path) -> None:
    from serving.imageio import decode_image
    from serving.model.predictor import Predictor
    from training import metrics

    summary = json.loads((trained_tiny / "training.json").read_text())
    assert summary["temperature"] > 0
    assert "f1_a" in summary["validation"]
    assert not (trained_tiny / "trainer-state").exists()
    predictor = Predictor.from_checkpoint(trained_tiny, device="cpu")
    samples = load_split("smoke", "test")
    scores = predictor.scores(
        [decode_image(sample.image) for sample in samples], [sample.caption for sample in samples]
    )
    label_a = np.array([sample.label_a for sample in samples])
    label_b = np.array([sample.label_b for sample in samples])
    task_a = metrics.task_a(label_a, scores.p_ai)
    predicted_b = metrics.predict_b(metrics.predict_a(scores.p_ai), scores.generator_given_ai)
    task_b = metrics.task_b(label_b, predicted_b, predictor.generators)
    # Chance is F1 0.5 on balanced Task A and about 0.1 weighted F1 on Task B's six classes.
    assert task_a["f1"] >= 0.8, task_a
    assert task_b["f1_weighted"] >= 0.5, task_b


@pytest.mark.unit
def test_training_prints_one_line_per_evaluation_not_a_dict_per_step() -> None:
    from types import SimpleNamespace

    from training.reporting import _EvaluationLines

    written: list[str] = []
    callback = _EvaluationLines()
    callback.training_bar = SimpleNamespace(write=written.append)  # type: ignore[assignment]
    state = SimpleNamespace(is_world_process_zero=True, epoch=3.0)
    callback.on_log(None, state, None, logs={"loss": 0.52, "learning_rate": 1e-3})
    callback.on_log(None, state, None, logs={"eval_loss": 0.41, "eval_f1_a": 0.975, "epoch": 3.0})
    assert written == ["epoch 3: loss 0.41  f1_a 0.975"]

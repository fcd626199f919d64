"""Train a detector with the Hugging Face Trainer; write a calibrated checkpoint.

The loop is transformers' ``Trainer``: evaluation and a saved state every epoch, the best epoch by
F1 on Task A kept (``load_best_model_at_end``), progress bars, ``--resume`` from the last saved
state, and distributed data parallelism when started by ``torchrun`` (the Trainer reads the
environment torchrun sets; nothing here is specific to it). The model computes the multi-task loss
itself (:func:`serving.model.detector.detector_loss`), so the stock ``compute_loss`` applies.

Order of :func:`train`: read the data; build the model (preset or ``init_from``); train
(reporting to ``report_to``, see :mod:`training.reporting`); fit the head-A temperature on
validation; write the checkpoint to ``output`` (config last), a ``training.json`` summary, the
model card (``README.md``) and the loss and metric curves (``loss.png``, ``metrics.png``); delete
the Trainer's working states unless asked to keep them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, cast

import numpy as np
import structlog
import torch
from transformers import EvalPrediction, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from schemas.errors import AigisError
from serving.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from serving.model.config import Architecture, DetectorConfig
from serving.model.detector import Detector
from serving.model.grow import grow_generators
from serving.model.presets import Backbones, build_preset
from training import metrics, reporting
from training.augment import DEFAULT_AUGMENT, AugmentConfig
from training.calibration import binary_nll, fit_temperature
from training.card import TRAINING_FILE, write_card
from training.collate import DetectorCollator, SampleDataset
from training.data import Sample, generators_of, load_split
from training.hyperparams import Hyperparameters, default_hyperparameters, with_overrides

log = structlog.get_logger(__name__)

STATE_DIR: Final[str] = "trainer-state"
"""Sub-directory of the output holding the Trainer's per-epoch states (for --resume)."""
SUMMARY_FILE: Final[str] = TRAINING_FILE
TINY_THREADS: Final[int] = 1
"""Measured on 2 shared cores: one tiny epoch on smoke took 9 s at 1 thread, 51 s at 2."""
BEST_METRIC: Final[str] = "f1_a"


class TrainingError(AigisError):
    """Training cannot start or finish as asked; the message says what to change."""


@dataclass(frozen=True)
class TrainRequest:
    """What to train. ``None`` hyperparameters take the defaults of the architecture and preset."""

    data: str
    output: Path
    architecture: Architecture | None = "fused"
    """None with ``init_from``: the architecture of that checkpoint."""
    preset: str = "tiny"
    pretrained: Path | None = None
    init_from: Path | None = None
    """Fine-tune this checkpoint instead of starting from the preset's encoders."""
    vision_backbone: str | None = None
    """The vision encoder: a family for tiny (clip, siglip, dinov2, vit), a Hugging Face model
    id or directory for base; None is the preset's (CLIP)."""
    text_backbone: str | None = None
    """The text encoder of fused (base only): a Hugging Face model id or directory."""
    linear_probe: bool = False
    """Freeze both encoders (kept in eval mode); only the heads train."""
    grow_generators: bool = False
    """With ``init_from``: when the data's label set is the checkpoint's plus new generators,
    grow the generator head (:func:`serving.model.grow.grow_generators`) instead of refusing."""
    epochs: float | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    max_steps: int | None = None
    seed: int = 0
    resume: bool = False
    name: str | None = None
    version: str | None = None
    """Defaults to the UTC time the run finished (YYYYmmddHHMMSS)."""
    augment: bool = True
    augment_config: AugmentConfig = DEFAULT_AUGMENT
    """What augmentation does when ``augment`` is on."""
    report_to: str = "auto"
    """``auto`` (TensorBoard when installed), ``none``, or integrations, comma-separated."""
    callbacks: tuple[TrainerCallback, ...] = ()
    """More Trainer callbacks (a caller's own progress or stopping rules)."""
    num_workers: int = 0
    """DataLoader worker processes; 0 decodes in the training process (best on 2 cores)."""
    threads: int | None = None
    """Intra-op CPU threads. None: 1 for the tiny preset (its operations are too small to gain
    from more, and extra threads spin against other work on a shared CPU), else torch's default
    of one per core."""
    keep_state: bool = False
    """Keep the Trainer's per-epoch states after a successful run."""
    progress: bool = True


@dataclass(frozen=True)
class TrainResult:
    output: Path
    config: DetectorConfig
    hyperparameters: Hyperparameters
    metrics: dict[str, float]
    """Validation metrics of the kept model (``f1_a``, ``accuracy_a``, ``f1_b_weighted``, ...)."""
    steps: int
    seconds: float
    wrote: bool
    """Whether this process wrote the checkpoint (under torchrun only rank 0 does)."""


def _preset(request: TrainRequest) -> str:
    """The preset of the encoders trained: the checkpoint's when fine-tuning one."""
    if request.init_from is None:
        return request.preset
    return DetectorConfig.load(request.init_from).preset


def train(request: TrainRequest) -> TrainResult:
    """Train as ``request`` says and write the checkpoint to ``request.output``.

    ``request.threads`` applies for the duration of the call; the previous count is restored.
    """
    previous_threads = torch.get_num_threads()
    threads = request.threads
    if threads is None and _preset(request) == "tiny":
        threads = TINY_THREADS
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train(request)
    finally:
        torch.set_num_threads(previous_threads)


def _train(request: TrainRequest) -> TrainResult:
    started = time.monotonic()
    integrations = reporting.resolve_report_to(request.report_to)
    set_seed(request.seed)
    generators = generators_of(request.data)
    train_items = load_split(request.data, "train")
    validation_items = load_split(request.data, "validation")
    components = _initial_components(request, generators)
    if request.linear_probe:
        try:
            components.model.freeze_backbones()
        except ValueError as exc:
            raise TrainingError(f"--linear-probe: {exc}") from None
    config = components.config
    hyper = with_overrides(
        default_hyperparameters(config.architecture, config.preset),
        learning_rate=request.learning_rate,
        weight_decay=request.weight_decay,
        batch_size=request.batch_size,
        epochs=request.epochs,
    )
    log.info(
        "training",
        architecture=config.architecture,
        preset=config.preset,
        data=request.data,
        train_items=len(train_items),
        validation_items=len(validation_items),
        **asdict(hyper),
    )
    state_dir = request.output / STATE_DIR
    trainer = Trainer(
        model=components.model,
        args=_training_arguments(request, hyper, state_dir, reporting.others(integrations)),
        data_collator=DetectorCollator(components.preprocessor, request.augment_config),
        train_dataset=SampleDataset(train_items, augment=request.augment),
        eval_dataset=SampleDataset(validation_items, augment=False),
        compute_metrics=task_metrics,
        optimizer_cls_and_kwargs=_optimizer(hyper),
        callbacks=list(request.callbacks),
    )
    reporting.attach(trainer, integrations, request.output)
    trainer.train(resume_from_checkpoint=_resume_point(request, state_dir))
    temperature, scores = _calibrate(trainer, validation_items)
    final = config.model_copy(
        update={
            "temperature": temperature,
            "name": request.name or config.name,
            "version": request.version or time.strftime("%Y%m%d%H%M%S", time.gmtime()),
        }
    )
    steps, seconds = trainer.state.global_step, time.monotonic() - started
    wrote = trainer.is_world_process_zero()
    if wrote:
        model = cast(Detector, trainer.model)
        save_checkpoint(
            model.eval(), components.tokenizer, components.image_processor, final, request.output
        )
        summary = _write_summary(request, final, hyper, scores, steps, seconds)
        write_card(request.output, final, summary)
        reporting.write_curves(trainer, request.output)
        if not request.keep_state:
            shutil.rmtree(state_dir, ignore_errors=True)
    log.info(
        "trained",
        output=str(request.output),
        version=final.version,
        temperature=round(temperature, 4),
        steps=steps,
        seconds=round(seconds, 1),
        **{key: round(value, 4) for key, value in scores.items() if key in _REPORTED},
    )
    return TrainResult(request.output, final, hyper, scores, steps, seconds, wrote)


def _calibrate(
    trainer: Trainer, validation_items: Sequence[Sample]
) -> tuple[float, dict[str, float]]:
    """The head-A temperature fitted on validation, and the kept model's validation metrics."""
    validation = trainer.predict(SampleDataset(validation_items, augment=False))
    # With two heads and two label tensors, the Trainer returns a tuple of each.
    predictions = cast(tuple[Any, ...], validation.predictions)
    label_ids = cast(tuple[Any, ...], validation.label_ids)
    logits_a = np.asarray(predictions[0]).reshape(-1)
    labels_a = np.asarray(label_ids[0]).reshape(-1)
    temperature = fit_temperature(logits_a, labels_a)
    scores = {
        key.removeprefix("test_"): float(value)
        for key, value in (validation.metrics or {}).items()
        if not key.endswith(("runtime", "per_second"))  # timings of the pass, not the model
    }
    scores["nll_a"] = binary_nll(logits_a, labels_a)
    scores["nll_a_calibrated"] = binary_nll(logits_a, labels_a, temperature)
    return temperature, scores


_REPORTED: Final[frozenset[str]] = frozenset({"f1_a", "accuracy_a", "f1_b_weighted", "loss"})


def task_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """Task A F1 / accuracy / AUROC at p_ai 0.5 and Task B weighted F1, competition-style.

    Scored by :mod:`training.metrics` exactly as ``aigis evaluate`` scores a checkpoint, on the
    uncalibrated logits (the temperature is fitted after training and does not move the 0.5 cut).
    """
    logits_a, logits_b = (np.asarray(array) for array in prediction.predictions[:2])
    labels_a, labels_b = (np.asarray(array).reshape(-1) for array in prediction.label_ids[:2])
    p_ai = 1.0 / (1.0 + np.exp(-logits_a.reshape(-1).astype(np.float64)))
    task_a = metrics.task_a(labels_a, p_ai)
    predicted_b = metrics.predict_b(metrics.predict_a(p_ai), logits_b)
    task_b = metrics.task_b(labels_b, predicted_b, [str(i) for i in range(logits_b.shape[1])])
    result = {
        "f1_a": task_a["f1"],
        "accuracy_a": task_a["accuracy"],
        "auroc_a": task_a["auroc"],
        "f1_b_weighted": task_b["f1_weighted"],
        "accuracy_b": task_b["accuracy"],
    }
    return {key: float(value) for key, value in result.items() if value is not None}


def _initial_components(request: TrainRequest, generators: tuple[str, ...]) -> Checkpoint:
    if request.init_from is None:
        if request.architecture is None:
            raise TrainingError("give --arch, or --init-from a checkpoint to fine-tune")
        try:
            return build_preset(
                request.preset,
                request.architecture,
                generators=generators,
                pretrained_dir=request.pretrained,
                name=request.name or f"aigis-{request.architecture}",
                backbones=Backbones(request.vision_backbone, request.text_backbone),
            )
        except ValueError as exc:  # a backbone the preset or architecture cannot use
            raise TrainingError(str(exc)) from None
    if request.vision_backbone or request.text_backbone:
        raise TrainingError(
            "--init-from keeps the checkpoint's encoders; drop --vision-backbone/--text-backbone"
        )
    loaded = load_checkpoint(request.init_from)
    config = loaded.config
    if request.architecture is not None and request.architecture != config.architecture:
        raise TrainingError(
            f"--init-from {request.init_from} is a {config.architecture} model, not "
            f"{request.architecture}; drop --arch or pick a matching checkpoint"
        )
    if request.grow_generators and config.generators != generators:
        loaded = grow_generators(loaded, generators)  # raises unless it only adds classes
        config = loaded.config
    if config.generators != generators:
        raise TrainingError(
            f"--init-from {request.init_from} predicts generators {list(config.generators)} but "
            f"{request.data} is labelled with {list(generators)}; fine-tune on data with the "
            "same generator list, or train a new model"
        )
    loaded.model.train()
    # A fine-tuned model gets a fresh calibration; the old temperature does not carry over.
    config = config.model_copy(update={"temperature": 1.0})
    return Checkpoint(config, loaded.model, loaded.tokenizer, loaded.image_processor)


def _training_arguments(
    request: TrainRequest, hyper: Hyperparameters, state_dir: Path, report_to: list[str] | str
) -> TrainingArguments:
    # torchrun sets WORLD_SIZE; the batch size asked for is global, as in the paper.
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    per_device = max(1, hyper.batch_size // world_size)
    return TrainingArguments(
        output_dir=str(state_dir),
        per_device_train_batch_size=per_device,
        per_device_eval_batch_size=max(per_device, 32),
        num_train_epochs=hyper.epochs,
        max_steps=request.max_steps if request.max_steps is not None else -1,
        learning_rate=hyper.learning_rate,
        weight_decay=hyper.weight_decay,
        warmup_steps=hyper.warmup_ratio,
        lr_scheduler_type="linear",
        max_grad_norm=hyper.max_grad_norm,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model=BEST_METRIC,
        greater_is_better=True,
        logging_strategy="steps",
        logging_steps=10,
        seed=request.seed,
        data_seed=request.seed,
        remove_unused_columns=False,
        label_names=["labels_a", "labels_b"],
        dataloader_num_workers=request.num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        ddp_find_unused_parameters=False,
        report_to=report_to,
        disable_tqdm=not request.progress,
    )


def _optimizer(hyper: Hyperparameters) -> tuple[type[torch.optim.Optimizer], dict[str, Any]]:
    if hyper.optimizer == "adam":
        return torch.optim.Adam, {"lr": hyper.learning_rate}
    return torch.optim.AdamW, {"lr": hyper.learning_rate}


def _resume_point(request: TrainRequest, state_dir: Path) -> str | None:
    if not request.resume:
        return None
    last: str | None = None
    if state_dir.is_dir():
        last = get_last_checkpoint(str(state_dir))  # type: ignore[no-untyped-call]  # untyped upstream
    if last is None:
        raise TrainingError(
            f"--resume found no saved training state under {state_dir}; states are saved at the "
            "end of each epoch and removed after a finished run, so start again without --resume"
        )
    return last


def _write_summary(
    request: TrainRequest,
    config: DetectorConfig,
    hyper: Hyperparameters,
    metrics: dict[str, float],
    steps: int,
    seconds: float,
) -> dict[str, Any]:
    summary = {
        "name": config.name,
        "version": config.version,
        "architecture": config.architecture,
        "preset": config.preset,
        "data": request.data,
        "init_from": str(request.init_from) if request.init_from else None,
        "backbones": {
            "vision": config.vision_config.get("model_type"),
            "text": (config.text_config or {}).get("model_type"),
            **config.sources,
        },
        "linear_probe": request.linear_probe,
        "seed": request.seed,
        "hyperparameters": asdict(hyper),
        "max_steps": request.max_steps,
        "steps": steps,
        "seconds": round(seconds, 1),
        "temperature": config.temperature,
        "validation": metrics,
    }
    path = request.output / SUMMARY_FILE
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary

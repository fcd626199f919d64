"""``aigis train``."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import typer

from aigis.cli.common import fail, settings

_ARCHITECTURES = ("fused", "clip-linear", "clip-contrastive")
_PRESETS = ("tiny", "base", "base-random")


def register(app: typer.Typer) -> None:
    @app.command(
        help=(
            "Train a detector (fused BERT+CLIP, clip-linear or clip-contrastive) and write a "
            "calibrated checkpoint. Unset hyperparameters take the defaults of the architecture "
            "and preset (the papers' for full size; fast ones for tiny). Runs unchanged under "
            "torchrun."
        )
    )
    def train(
        data: str = typer.Option(
            ..., "--data", help="smoke, a CT2 parquet directory, an image folder, or a store URL."
        ),
        output: Path = typer.Option(..., "--output", "-o", help="Checkpoint directory to write."),
        arch: str | None = typer.Option(
            None,
            "--arch",
            help=f"One of {', '.join(_ARCHITECTURES)}. Default: fused, or --init-from's.",
        ),
        preset: str = typer.Option(
            "tiny", "--preset", help=f"Where the encoders come from: {', '.join(_PRESETS)}."
        ),
        pretrained: Path | None = typer.Option(
            None,
            "--pretrained",
            help="Directory with bert-base-uncased/ and clip-vit-base-patch32/ (preset base). "
            "Default: $AIGIS_PRETRAINED_DIR, else the Hugging Face cache, else a download from "
            "the hub (not with HF_HUB_OFFLINE=1).",
        ),
        init_from: Path | None = typer.Option(
            None, "--init-from", help="Fine-tune this checkpoint instead of a preset."
        ),
        vision_backbone: str | None = typer.Option(
            None,
            "--vision-backbone",
            help="Vision encoder. tiny: clip, siglip, dinov2 or vit; base: a Hugging Face model "
            "id or directory (default openai/clip-vit-base-patch32).",
        ),
        text_backbone: str | None = typer.Option(
            None,
            "--text-backbone",
            help="Text encoder of fused, base preset: a Hugging Face model id or directory "
            "(default bert-base-uncased).",
        ),
        linear_probe: bool = typer.Option(
            False, "--linear-probe", help="Freeze the encoders; train only the heads."
        ),
        epochs: float | None = typer.Option(None, "--epochs", min=0.01),
        lr: float | None = typer.Option(None, "--lr", min=0.0, help="Peak learning rate."),
        batch_size: int | None = typer.Option(
            None, "--batch-size", min=1, help="Global batch size (split across torchrun ranks)."
        ),
        weight_decay: float | None = typer.Option(None, "--weight-decay", min=0.0),
        max_steps: int | None = typer.Option(
            None, "--max-steps", min=1, help="Stop after this many optimiser steps."
        ),
        seed: int = typer.Option(0, "--seed"),
        resume: bool = typer.Option(
            False,
            "--resume",
            help="Continue an interrupted run from the last epoch saved under --output (same "
            "options as the first run).",
        ),
        report_to: str | None = typer.Option(
            None,
            "--report-to",
            help="auto (TensorBoard when installed), none, or integrations such as "
            "tensorboard,mlflow [default: training.report_to].",
        ),
        name: str | None = typer.Option(None, "--name", help="Model name. Default: aigis-ARCH."),
        version: str | None = typer.Option(
            None, "--version", help="Model version. Default: the UTC time training ends."
        ),
        augment: bool = typer.Option(
            True,
            "--augment/--no-augment",
            help="Robustness augmentations of training images, both classes alike "
            "(training.augment_degrade_p and training.augment_degradations).",
        ),
        workers: int = typer.Option(
            0, "--workers", min=0, help="DataLoader processes decoding images."
        ),
        threads: int | None = typer.Option(
            None,
            "--threads",
            min=1,
            help="CPU threads for torch. Default: 1 for tiny, else one per core.",
        ),
        keep_state: bool = typer.Option(
            False, "--keep-state", help="Keep per-epoch training states after success."
        ),
    ) -> None:
        from schemas.errors import AigisError
        from serving.model.config import Architecture
        from training.augment import AugmentConfig
        from training.degrade import pick
        from training.trainer import TrainRequest
        from training.trainer import train as run_training

        training = settings().training
        try:
            degradations = tuple(pick(training.augment_degradations))
        except ValueError as err:
            fail(f"aigis train: AIGIS_TRAINING__AUGMENT_DEGRADATIONS: {err}", 2)
        augment_config = AugmentConfig(
            degrade_p=training.augment_degrade_p, degradations=degradations
        )
        if arch is not None and arch not in _ARCHITECTURES:
            fail(f"aigis train: --arch {arch!r} is not one of {', '.join(_ARCHITECTURES)}", 2)
        if preset not in _PRESETS:
            fail(f"aigis train: --preset {preset!r} is not one of {', '.join(_PRESETS)}", 2)
        request = TrainRequest(
            data=data,
            output=output,
            architecture=cast("Architecture | None", arch or (None if init_from else "fused")),
            preset=preset,
            pretrained=pretrained,
            init_from=init_from,
            vision_backbone=vision_backbone,
            text_backbone=text_backbone,
            linear_probe=linear_probe,
            epochs=epochs,
            learning_rate=lr,
            batch_size=batch_size,
            weight_decay=weight_decay,
            max_steps=max_steps,
            seed=seed,
            resume=resume,
            name=name,
            version=version,
            augment=augment,
            augment_config=augment_config,
            report_to=report_to or training.report_to,
            num_workers=workers,
            threads=threads,
            keep_state=keep_state,
        )
        try:
            result = run_training(request)
        except AigisError as err:
            fail(f"aigis train: {err}")
        if not result.wrote:
            return  # another torchrun process wrote the checkpoint and reports it
        metrics = result.metrics
        typer.echo(
            f"wrote {result.output} ({result.config.name} {result.config.version}, "
            f"{result.steps} steps in {result.seconds:.0f} s): validation "
            f"F1 task A {metrics.get('f1_a', float('nan')):.3f}, "
            f"weighted F1 task B {metrics.get('f1_b_weighted', float('nan')):.3f}, "
            f"temperature {result.config.temperature:.3f}"
        )

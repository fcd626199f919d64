"""What the retraining tests share besides their fixtures: the world they run in (base data, two
archives of known answers, TorchServe), the label-store records they start from, and cycles with
injected candidates."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import redis

from aigis.promote import ServiceControl
from aigis.retrain import CycleResult, RetrainOptions, Train, run_cycle
from schemas.labels import GENERATORS
from schemas.settings import Settings
from serving.client.manifest import ArchiveInfo
from serving.torchserve.archive import ExportOptions, export_archive
from tests.aigis.forced import forced_checkpoint
from training.data import Sample, load_split
from training.labelstore import LabelRecord, LabelStore, Origin
from training.trainer import TrainRequest

EXPORT = ExportOptions(batch_size=8, max_batch_delay_ms=10, max_forward_batch=8)


def export(checkpoint: Path, store: Path, version: str) -> ArchiveInfo:
    return export_archive(checkpoint, store, replace(EXPORT, version=version))


@dataclass(frozen=True)
class World:
    """What every test shares: base data, the v1 archive (all "human"), TorchServe."""

    base: Path
    champion: ArchiveInfo
    better: ArchiveInfo
    """An all-"AI, SDXL" archive of version 50, for the command-line test."""
    extra: list[Sample]
    """Smoke images outside the base data, to be pseudo-labelled."""
    holdout: list[Sample]


def fill_store(store: LabelStore, world: World) -> None:
    """Pseudo-labels for the extra images and for one hold-out image; one human decision."""
    now = datetime.now(UTC)

    def record(sample: Sample, origin: Origin, label_a: int, generator: str) -> LabelRecord:
        blob = store.put_image(sample.image, sample.sha256)
        return LabelRecord(
            image_sha256=sample.sha256,
            origin=origin,
            label_a=label_a,
            label_b=GENERATORS.index(generator),
            generator=generator,
            labelled_at=now,
            stored_at=now,
            confidence=0.95 if origin is Origin.PSEUDO else None,
            caption=sample.caption,
            image_blob=blob,
        )

    pseudo = [record(s, Origin.PSEUDO, s.label_a, GENERATORS[s.label_b]) for s in world.extra] + [
        record(world.holdout[0], Origin.PSEUDO, 1, "sd21")
    ]
    human = [record(world.holdout[12], Origin.HUMAN, 1, "sdxl")]
    store.append([*pseudo, *human])


def injected(answer_ai: bool, generator: str, seen: dict[str, object]) -> Train:
    """A trainer that writes a forced checkpoint, after noting what it was asked to train on."""

    def train(request: TrainRequest) -> Path:
        seen["init_from"] = request.init_from
        seen["train_items"] = len(load_split(request.data, "train", normalise=False))
        assert request.version is not None
        return forced_checkpoint(request.output, request.version, ai=answer_ai, generator=generator)

    return train


def better_cycle(
    settings: Settings, service: ServiceControl, world: World, seen: dict[str, object]
) -> CycleResult:
    """A cycle whose candidate answers "AI, SDXL" for everything (better than the champion on
    F1; it calls every human-made image AI, so the gate's false-positive limit is lifted)."""
    lifted = settings.retrain.model_copy(update={"max_fpr_increase": 1.0})
    return run_cycle(
        settings.model_copy(update={"retrain": lifted}),
        RetrainOptions(base=str(world.base)),
        train=injected(True, "sdxl", seen),
        control=service,
    )


def namespace(settings: Settings) -> str | None:
    client = redis.Redis.from_url(settings.redis.url)
    try:
        value = client.get(settings.redis.namespace_key)
        return None if value is None else value.decode()
    finally:
        client.close()


def human_decisions_naming(store: LabelStore, samples: list[Sample], name: str) -> None:
    """Reviewers' decisions typing ``name``, outside the model's set: ``other``, name kept."""
    now = datetime.now(UTC)
    store.append(
        [
            LabelRecord(
                image_sha256=s.sha256,
                origin=Origin.HUMAN,
                label_a=1,
                label_b=None,
                generator="other",
                generator_name=name,
                labelled_at=now,
                stored_at=now,
                caption=s.caption,
                image_blob=store.put_image(s.image, s.sha256),
            )
            for s in samples
        ]
    )

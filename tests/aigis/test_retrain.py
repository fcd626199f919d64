"""Gated retraining against a real TorchServe, Redis and Kafka, with tiny models.

Candidates of known quality are injected through ``run_cycle(train=...)``: on a hold-out of real
and SDXL images, a model that answers "AI, SDXL" for everything beats one that answers "human"
on both tasks, and one that answers "AI, DALL-E 3" improves Task A but loses Task B.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aigis.canary import CanaryControl
from aigis.promote import ServiceControl
from aigis.retrain import RetrainOptions, run_cycle
from schemas.labels import GENERATORS
from schemas.settings import Settings
from serving.client.management import ManagementClient
from serving.torchserve.server import running_torchserve
from tests.aigis.forced import forced_checkpoint
from tests.aigis.retrain_support import (
    World,
    better_cycle,
    export,
    fill_store,
    human_decisions_naming,
    injected,
    namespace,
)
from tests.streams import quick_worker
from training.data import load_split
from training.data.parquet import write_ct2
from training.labelstore import LabelRecord, LabelStore, Origin
from training.registry import Registry, RegistryError
from training.trainer import TrainRequest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AIGIS = str(Path(sys.executable).with_name("aigis"))


@pytest.fixture(scope="module")
def world(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("retrain")
    train = list(load_split("smoke", "train", normalise=False))
    test = list(load_split("smoke", "test", normalise=False))
    sdxl = GENERATORS.index("sdxl")
    holdout = [s for s in test if s.label_b == 0][:6] + [s for s in test if s.label_b == sdxl][:7]
    base = root / "base"
    write_ct2(base / "train.parquet", train[:8])
    write_ct2(base / "validation.parquet", train[8:12])
    write_ct2(base / "test.parquet", holdout[:12])  # the 13th is labelled by a person instead
    store = root / "model-store"
    champion = export(forced_checkpoint(root / "v1", "1", ai=False), store, "1")
    better = export(forced_checkpoint(root / "v50", "50", ai=True), root / "elsewhere", "50")
    with running_torchserve(settings, store):
        yield World(base, champion, better, train[12:24], holdout)


@pytest.fixture
def cycle_settings(
    isolated_settings: Settings, redis_prefix: str, tmp_path: Path, world: World
) -> Settings:
    """Fresh topics, cache prefix, store and registry; small worker batches."""
    s = isolated_settings
    return s.model_copy(
        update={
            "redis": s.redis.model_copy(update={"key_prefix": redis_prefix}),
            "store": s.store.model_copy(
                update={"url": str(tmp_path / "labels"), "keep_image_bytes": True}
            ),
            "retrain": s.retrain.model_copy(update={"registry_dir": tmp_path / "registry"}),
            # Retraining re-reads images by URI through the fetch policy: files under tmp_path.
            "fetch": s.fetch.model_copy(update={"file_roots": (tmp_path,)}),
            "worker": quick_worker(s, "retrain-test", batch_size=4),
        }
    )


@pytest.fixture
def service(cycle_settings: Settings, world: World) -> Iterator[ServiceControl]:
    """Version 1 in service, recorded in a fresh registry; a store with labels to train on."""
    registry = Registry(cycle_settings.registry_dir)
    registry.add_archive(world.champion.path)
    with ManagementClient(cycle_settings.serving, key_file=cycle_settings.serving_key_file) as mc:
        control = ServiceControl(cycle_settings, registry, mc)
        control.activate("1", action="register")
        fill_store(LabelStore.from_settings(cycle_settings), world)
        yield control


def test_a_better_candidate_is_promoted_and_new_verdicts_carry_its_version(
    cycle_settings: Settings, service: ServiceControl, world: World
) -> None:
    from tests.streams import drain, events_for, publish_events, run_worker

    image = (world.holdout[3].image, world.holdout[3].caption)
    for prefix in ("first", "again"):  # one at a time: the second is answered from the cache
        publish_events(cycle_settings, events_for([image], prefix=prefix))
        run_worker(cycle_settings)
    before = drain(cycle_settings, "verdicts", expect=2, finished=True)
    assert {(v.model_version, v.cached) for v in before} == {("1", False), ("1", True)}

    seen: dict[str, object] = {}
    result = better_cycle(cycle_settings, service, world, seen)

    assert result.outcome == "promoted", result.describe()
    record = result.record
    assert record is not None
    assert (record.version, record.parent, record.status) == ("2", "1", "promoted")
    assert record.metrics["task_a.f1"] > record.champion_metrics["task_a.f1"]
    assert record.data is not None
    counts = record.data.counts
    assert (counts["selected"], counts["in_holdout"]) == (12, 1)
    assert (counts["holdout_base"], counts["holdout_human"]) == (12, 1)
    assert seen["train_items"] == 8 + 12
    registry = Registry(cycle_settings.registry_dir)
    assert seen["init_from"] == Path(str(registry.get("1").checkpoint))
    # The namespace moved with the default, and the registry says what is in service.
    assert namespace(cycle_settings) == "2"
    assert service.default_version() == "2"
    assert registry.service_stack() == ["1", "2"]
    assert "PROMOTE" in result.describe()
    card = (Path(str(record.checkpoint)) / "README.md").read_text()
    assert f"| Task A F1 | {record.metrics['task_a.f1']:.4f} |" in card
    assert "model-index:" in card

    publish_events(cycle_settings, events_for([image], prefix="after"))
    run_worker(cycle_settings)
    after = [
        v
        for v in drain(cycle_settings, "verdicts", expect=3, finished=True)
        if v.event_id.startswith("after")
    ]
    assert [(v.model_version, v.cached) for v in after] == [("2", False)]
    assert after[0].decision == "ai_generated"


def test_with_a_canary_share_a_better_candidate_starts_as_a_canary_and_is_promoted_by_hand(
    cycle_settings: Settings, service: ServiceControl, world: World
) -> None:
    retrain = cycle_settings.retrain.model_copy(update={"canary_percent": 20.0})
    through = cycle_settings.model_copy(update={"retrain": retrain})
    result = better_cycle(through, service, world, {})
    assert result.outcome == "canary", result.describe()
    record = result.record
    assert record is not None
    assert record.status == "registered"
    assert record.checkpoint is not None  # kept: the canary may yet be promoted
    # Not in service yet: served beside version 1, which still answers everything else.
    assert (service.default_version(), namespace(through)) == ("1", "1")
    assert record.version in service.served_versions()
    canaries = CanaryControl(through, service)
    state = canaries.state()
    assert state is not None
    assert (state.version, state.percent, state.default) == (record.version, 20.0, "1")
    # While it runs, another cycle is skipped: it would unregister the candidate or start a
    # second canary.
    again = better_cycle(through, service, world, {})
    assert (again.outcome, again.record) == ("skipped", None), again.describe()
    assert f"canary of version {record.version}" in again.reason
    canaries.promote()
    assert (service.default_version(), namespace(through)) == (record.version, record.version)
    assert canaries.state() is None


def test_a_worse_candidate_is_rejected_and_service_is_unchanged(
    cycle_settings: Settings, service: ServiceControl, world: World
) -> None:
    before = (service.default_version(), namespace(cycle_settings), service.served_versions())
    result = run_cycle(
        cycle_settings,
        RetrainOptions(base=str(world.base)),
        train=injected(True, "dalle3", {}),  # better Task A, but Task B collapses
        control=service,
    )
    assert result.outcome == "rejected", result.describe()
    record = result.record
    assert record is not None
    assert record.gate is not None
    assert "task_b.f1_weighted" in record.gate.regressions
    # It also calls every human-made image AI: the false-positive limit refuses it too.
    assert "operating_point.false_positive_rate" in record.gate.regressions
    assert record.checkpoint is None
    assert not Registry(cycle_settings.registry_dir).checkpoint_dir(record.version).exists()
    assert (service.default_version(), namespace(cycle_settings)) == before[:2]
    assert service.served_versions() == before[2]
    assert Registry(cycle_settings.registry_dir).service_stack() == ["1"]

    again = run_cycle(cycle_settings, RetrainOptions(base=str(world.base)), control=service)
    assert again.outcome == "skipped"
    assert "has not changed" in again.reason


def test_model_commands_register_roll_back_and_list(
    cycle_settings: Settings, service: ServiceControl, world: World
) -> None:
    env = {
        **os.environ,
        "AIGIS_RETRAIN__REGISTRY_DIR": str(cycle_settings.registry_dir),
        "AIGIS_REDIS__KEY_PREFIX": cycle_settings.redis.key_prefix,
        "AIGIS_LOG_FORMAT": "json",
    }

    def aigis(*args: str) -> str:
        done = subprocess.run(
            [AIGIS, "model", *args], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "in service" in aigis("register", str(world.better.path), "--set-default")
    assert (service.default_version(), namespace(cycle_settings)) == ("50", "50")
    assert "version 1 in service (was 50)" in aigis("rollback")
    assert (service.default_version(), namespace(cycle_settings)) == ("1", "1")
    rows = {row["version"]: row for row in json.loads(aigis("list", "--json"))}
    assert rows["1"]["in_service"] is True
    assert rows["1"]["torchserve"] == "default"
    assert rows["50"]["torchserve"] == "registered"
    assert Registry(cycle_settings.registry_dir).service_stack() == ["1"]


def test_a_real_fine_tuning_cycle_records_its_decision(
    cycle_settings: Settings, service: ServiceControl, world: World
) -> None:
    result = run_cycle(
        cycle_settings,
        RetrainOptions(base=str(world.base), max_steps=1, batch_size=4),
        control=service,
    )
    record = result.record
    assert record is not None
    assert record.gate is not None
    assert result.outcome == ("promoted" if record.gate.promote else "rejected")
    assert record.status == result.outcome
    in_service = record.version if record.gate.promote else "1"
    assert service.default_version() == in_service
    assert namespace(cycle_settings) == in_service
    assert record.data is not None
    assert record.data.counts["train_total"] == 8 + 12


def test_torchserve_and_registry_must_agree_before_a_cycle(
    cycle_settings: Settings, service: ServiceControl, world: World
) -> None:
    registry = Registry(cycle_settings.registry_dir)
    registry.add_archive(world.better.path)
    service.load("50")
    with ManagementClient(cycle_settings.serving, key_file=cycle_settings.serving_key_file) as mc:
        mc.set_default("detector", "50")  # someone switched versions by hand
    try:
        with pytest.raises(RegistryError, match="make them agree"):
            run_cycle(cycle_settings, RetrainOptions(base=str(world.base)), control=service)
    finally:
        service.activate("1", action="set-default")


def test_unusable_images_are_skipped_and_counted_and_too_few_stop_the_cycle(
    cycle_settings: Settings, service: ServiceControl, world: World, tmp_path: Path
) -> None:
    """Pseudo-labels by URI: one intact, one replaced behind its URI, one gone."""
    from training.retrain_data import TooFewImagesError

    images = tmp_path / "images"
    images.mkdir()
    now = datetime.now(UTC)
    records = []
    for i, sample in enumerate(load_split("smoke", "train", normalise=False)[24:27]):
        path = images / f"{i}.png"
        path.write_bytes(sample.image)
        records.append(
            LabelRecord(
                image_sha256=sample.sha256,
                origin=Origin.PSEUDO,
                label_a=sample.label_a,
                label_b=sample.label_b,
                generator=GENERATORS[sample.label_b],
                labelled_at=now,
                stored_at=now,
                confidence=0.95,
                image_uri=path.as_uri(),
            )
        )
    LabelStore.from_settings(cycle_settings).append(records)
    (images / "1.png").write_bytes(world.holdout[5].image)  # now serves a hold-out image
    (images / "2.png").unlink()

    strict = cycle_settings.model_copy(
        update={"retrain": cycle_settings.retrain.model_copy(update={"min_usable_items": 100})}
    )
    with pytest.raises(TooFewImagesError, match="AIGIS_RETRAIN__MIN_USABLE_ITEMS"):
        run_cycle(strict, RetrainOptions(base=str(world.base)), control=service)
    assert Registry(cycle_settings.registry_dir).service_stack() == ["1"]

    seen: dict[str, object] = {}
    result = better_cycle(cycle_settings, service, world, seen)
    assert result.record is not None
    assert result.record.data is not None
    counts = result.record.data.counts
    assert counts["usable"] == 12 + 1
    assert counts["skipped.image_hash_mismatch"] == 1
    assert counts["skipped.unreachable_uri"] == 1
    assert seen["train_items"] == 8 + 13
    assert "skipped.unreachable_uri=1" in result.describe()


def test_adding_a_generator_waits_for_enough_examples_then_grows_the_head(
    cycle_settings: Settings, service: ServiceControl, world: World
) -> None:
    from aigis.retrain import train_checkpoint
    from serving.model.config import DetectorConfig
    from training.data import generators_of
    from training.new_generator import TooFewExamplesError

    flux = [s for s in load_split("smoke:8", "train", normalise=False) if s.label_b == 6][:8]
    store = LabelStore.from_settings(cycle_settings)
    human_decisions_naming(store, flux[:3], "flux/1-dev")
    # One training step cannot teach the new class; the recall it needs is lifted here.
    retrain = cycle_settings.retrain.model_copy(
        update={"min_examples_new_generator": 6, "min_new_class_recall": 0.0}
    )
    strict = cycle_settings.model_copy(update={"retrain": retrain})
    options = RetrainOptions(
        base=str(world.base), max_steps=1, batch_size=4, add_generator="Flux/1-Dev"
    )
    with pytest.raises(TooFewExamplesError, match="AIGIS_RETRAIN__MIN_EXAMPLES_NEW_GENERATOR"):
        run_cycle(strict, options, control=service)
    assert Registry(cycle_settings.registry_dir).service_stack() == ["1"]

    human_decisions_naming(store, flux[3:], "flux/1-dev")
    seen: dict[str, object] = {}

    def grow_and_note(request: TrainRequest) -> Path:
        seen["grow"] = request.grow_generators
        seen["data"] = generators_of(request.data)
        path = train_checkpoint(request)
        seen["trained"] = DetectorConfig.load(path).generators
        return path

    result = run_cycle(strict, options, train=grow_and_note, control=service)
    grown = (*GENERATORS, "flux/1-dev")
    assert seen == {"grow": True, "data": grown, "trained": grown}
    record = result.record
    assert record is not None
    assert record.gate is not None
    assert record.data is not None
    # Six examples trained on, one in four held out for the new class's own report.
    assert record.data.counts["new_generator_train"] == 6
    assert record.data.counts["train_total"] == 8 + 12 + 6
    assert set(record.gate.new_classes) == {"flux/1-dev"}
    assert record.gate.new_classes["flux/1-dev"]["examples"] == 2
    assert "new class flux/1-dev" in record.gate.summary()
    # The old classes are compared on the old hold-out, which holds none of the new examples.
    assert record.data.counts["holdout_base"] == 12
    assert record.gate.champion is not None

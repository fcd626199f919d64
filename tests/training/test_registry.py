"""The model registry, the promotion gate and pseudo-label selection (no services)."""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.labels import GENERATORS
from training.gate import decide, flatten_metrics
from training.labelstore import LabelRecord, Origin
from training.labelstore.records import to_table
from training.registry import (
    ModelVersion,
    Registry,
    RegistryError,
    ServiceEvent,
    check_id,
    read_lineage,
)
from training.selection import select_pseudo_labels

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fake_archive(
    path: Path, version: str, weights: bytes = b"w", *, name: str = "detector"
) -> Path:
    """A .mar with a manifest and a flat checkpoint directory (no model inside)."""
    with zipfile.ZipFile(path, "w") as archive:
        manifest = {"model": {"modelName": name, "modelVersion": version}}
        archive.writestr("MAR-INF/MANIFEST.json", json.dumps(manifest))
        archive.writestr("checkpoint/config.json", json.dumps({"version": version}))
        archive.writestr("checkpoint/model.safetensors", weights)
        archive.writestr("checkpoint/../escape.txt", "never unpacked")
    return path


def event(action: str, version: str, minutes: int) -> ServiceEvent:
    return ServiceEvent(
        action=action,  # type: ignore[arg-type]
        version=version,
        previous=None,
        namespace=version,
        at=T0 + timedelta(minutes=minutes),
    )


def test_versions_are_recorded_once_and_numbered_upwards(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    assert registry.next_version() == "1"
    registry.record(ModelVersion(version="1", name="detector", status="registered"))
    registry.record(ModelVersion(version="7", name="detector", status="rejected", parent="1"))
    assert [v.version for v in read_lineage(tmp_path)] == ["1", "7"]
    assert registry.next_version(taken=("9", "x")) == "10"
    with pytest.raises(RegistryError, match="already in the registry"):
        registry.record(ModelVersion(version="1", name="detector", status="registered"))
    with pytest.raises(RegistryError, match="not in the registry"):
        registry.get("3")
    with pytest.raises(RegistryError, match="cannot be used"):
        registry.record(ModelVersion(version="../x", name="detector", status="registered"))


def test_the_service_history_is_a_stack_that_rollback_pops(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    for version in ("1", "2", "3"):
        registry.record(ModelVersion(version=version, name="detector", status="promoted"))
    assert registry.in_service() is None
    assert registry.rollback_target() is None
    registry.log_event(event("register", "1", 0))
    registry.log_event(event("promote", "2", 1))
    registry.log_event(event("promote", "3", 2))
    assert registry.service_stack() == ["1", "2", "3"]
    assert registry.rollback_target() == "2"
    registry.log_event(event("rollback", "2", 3))
    assert registry.in_service() is not None
    assert registry.in_service().version == "2"  # type: ignore[union-attr]
    assert registry.rollback_target() == "1"
    registry.log_event(event("rollback", "1", 4))
    assert registry.service_stack() == ["1"]
    registry.log_event(event("set-default", "3", 5))
    assert registry.service_stack() == ["1", "3"]


def test_an_archive_is_kept_with_its_checkpoint_unpacked(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    archive = fake_archive(tmp_path / "detector-4.mar", "4")
    record = registry.add_archive(archive)
    assert (record.version, record.status, record.name) == ("4", "registered", "detector")
    assert record.archive is not None
    assert Path(record.archive).read_bytes() == archive.read_bytes()
    unpacked = sorted(p.name for p in Path(str(record.checkpoint)).iterdir())
    assert unpacked == ["config.json", "model.safetensors"]
    assert not (tmp_path / "registry" / "escape.txt").exists()
    assert registry.add_archive(archive) == record  # the same archive again: nothing new
    other = fake_archive(tmp_path / "other.mar", "4", weights=b"different")
    with pytest.raises(RegistryError, match="from another archive"):
        registry.add_archive(other)
    (tmp_path / "junk.mar").write_bytes(b"not a zip")
    with pytest.raises(RegistryError, match="not a TorchServe model archive"):
        registry.add_archive(tmp_path / "junk.mar")


def test_only_one_process_changes_the_registry_at_a_time(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    with registry.lock(), pytest.raises(RegistryError, match="another retrain"):  # noqa: SIM117
        with Registry(tmp_path).lock():
            pass
    with registry.lock():
        pass


def test_flatten_metrics_keeps_numbers_of_the_report() -> None:
    report = {
        "n": 10,
        "task_a": {"f1": 0.5, "auroc": None},
        "task_b": {"f1_weighted": 0.25, "per_class": {"sd21": {"f1": 1.0}}},
        "confusion": {"task_a": [[1, 2], [3, 4]]},
        "reliability": [{"bin": 0}],
    }
    assert flatten_metrics(report) == {"n": 10.0, "task_a.f1": 0.5, "task_b.f1_weighted": 0.25}


@pytest.mark.parametrize(
    ("candidate", "promote", "why"),
    [
        ({"task_a.f1": 0.80, "task_b.f1_weighted": 0.60}, True, "+0.1000"),
        ({"task_a.f1": 0.702, "task_b.f1_weighted": 0.60}, False, "needs +0.0050"),
        ({"task_a.f1": 0.90, "task_b.f1_weighted": 0.55}, False, "task_b.f1_weighted drops"),
        ({"task_a.f1": 0.90, "task_b.f1_weighted": 0.595}, True, "+0.2000"),
        ({"task_b.f1_weighted": 0.9}, False, "could not be computed"),
    ],
)
def test_the_gate(candidate: dict[str, float], promote: bool, why: str) -> None:
    champion = {"task_a.f1": 0.70, "task_b.f1_weighted": 0.60}
    decision = decide(
        candidate, champion, metric="task_a.f1", min_improvement=0.005, max_regression=0.01
    )
    assert decision.promote is promote
    assert why in decision.summary()


def record(
    sha: str, *, confidence: float, generator: str = "sdxl", blob: bool = True
) -> LabelRecord:
    label_a = 0 if generator == "real" else 1
    return LabelRecord(
        image_sha256=sha,
        origin=Origin.PSEUDO,
        label_a=label_a,
        label_b=GENERATORS.index(generator) if generator in GENERATORS else None,
        generator=generator,
        labelled_at=T0,
        stored_at=T0,
        confidence=confidence,
        image_blob=f"blobs/{sha[:2]}/{sha}" if blob else None,
    )


def test_selection_applies_threshold_caps_and_hold_out_exclusion() -> None:
    records = [
        record("a" * 64, confidence=0.99),
        record("b" * 64, confidence=0.95),
        record("c" * 64, confidence=0.90),  # over the cap of 2 for sdxl
        record("d" * 64, confidence=0.97, generator="real"),
        record("e" * 64, confidence=0.50, generator="real"),  # below the threshold
        record("f" * 64, confidence=0.99, generator="flux"),  # the model has no such class
        record("1" * 64, confidence=0.99, generator="sd3"),  # in the hold-out
        record("2" * 64, confidence=0.99, generator="sd3", blob=False),  # no image kept
    ]
    human = replace(record("9" * 64, confidence=1.0), origin=Origin.HUMAN)
    table = pa.concat_tables([to_table(records), to_table([human])])
    selection = select_pseudo_labels(
        table, threshold=0.8, max_per_class=2, exclude={"1" * 64}, generators=GENERATORS
    )
    assert selection.table["image_sha256"].to_pylist() == ["a" * 64, "d" * 64, "b" * 64]
    assert selection.counts == {
        "available": 8,
        "in_holdout": 1,
        "below_threshold": 1,
        "unknown_generator": 1,
        "no_image": 1,
        "over_cap": 1,
        "selected": 3,
        "class.real": 1,
        "class.sdxl": 2,
    }


HOSTILE_IDS = [
    "../x",
    "../../victim",
    "/abs",
    "/tmp",
    "a/b",
    "a\\b",
    "..",
    ".",
    "",
    "x" * 200,
    "a\x00b",
    "1\n",
    "-1",
    ".hidden",
    "~",
    "1 2",
]


def tree(root: Path, *, skip: Path) -> dict[str, bytes]:
    """Every file under ``root`` but those under ``skip``, with its content."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and skip not in p.parents
    }


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A victim directory beside the registry, and a valid record where ``../..`` would lead."""
    victim = tmp_path / "outer" / "victim"
    victim.mkdir(parents=True)
    (victim / "keep.txt").write_text("mine")
    planted = ModelVersion(version="1", name="detector", status="registered")
    (tmp_path / "outer" / "inner").mkdir()
    (tmp_path / "outer" / "inner" / "planted.json").write_text(planted.model_dump_json())
    return tmp_path


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_no_version_or_name_reaches_outside_the_registry(outside: Path, hostile: str) -> None:
    root = outside / "outer" / "inner" / "registry"
    registry = Registry(root)
    registry.add_archive(fake_archive(outside / "good.mar", "1"))
    bad_version = fake_archive(outside / "bad-version.mar", hostile)
    bad_name = fake_archive(outside / "bad-name.mar", "2", name=hostile)
    good = fake_archive(outside / "ok.mar", "4")
    before = tree(outside, skip=root)
    registry_before = tree(root, skip=root / "nothing")

    attempts = {
        "get": lambda: registry.get(hostile),
        "get planted": lambda: registry.get("../../planted"),
        "checkpoint_dir": lambda: registry.checkpoint_dir(hostile),
        "record version": lambda: registry.record(
            ModelVersion(version=hostile, name="detector", status="registered"), replace=True
        ),
        "record name": lambda: registry.record(
            ModelVersion(version="3", name=hostile, status="registered")
        ),
        "add_archive version": lambda: registry.add_archive(bad_version),
        "add_archive name": lambda: registry.add_archive(bad_name),
        "add_archive parent": lambda: registry.add_archive(good, parent=hostile),
        "log_event": lambda: registry.log_event(event("set-default", hostile, 0)),
    }
    for entry, attempt in attempts.items():
        with pytest.raises(RegistryError, match="cannot be used"):
            attempt()
        assert (outside / "outer" / "victim" / "keep.txt").read_text() == "mine", entry

    assert tree(outside, skip=root) == before
    assert tree(root, skip=root / "nothing") == registry_before
    assert [v.version for v in registry.versions()] == ["1"]


def test_a_version_that_is_not_a_valid_id_is_named_in_a_readable_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError) as caught:
        Registry(tmp_path).get("x" * 200)
    message = str(caught.value)
    assert "x" * 64 + "'..." in message
    assert "x" * 65 not in message
    assert "letters, digits" in message


@given(st.text(max_size=80))
def test_every_accepted_id_is_one_file_name_inside_the_registry(value: str) -> None:
    root = Path("/registry")
    try:
        check_id(value)
    except RegistryError:
        return
    path = Registry(root).checkpoint_dir(value)
    assert path.parent == root / "checkpoints"
    assert path.name == value
    assert value not in (".", "..")
    assert "/" not in value
    assert "\x00" not in value

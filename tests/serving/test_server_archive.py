"""Model archives: what ``aigis export`` writes and how archives are picked from a store."""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from serving.client.manifest import ArchiveError, newest_archives, read_manifest
from serving.errors import CheckpointError
from serving.torchserve.archive import ExportOptions, export_archive, options_like

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def checkpoint(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint, taken back out of the store's archive."""
    target = tmp_path_factory.mktemp("checkpoint")
    with zipfile.ZipFile(next(model_store.glob("*.mar"))) as mar:
        for name in mar.namelist():
            if name.startswith("checkpoint/"):
                mar.extract(name, target)
    return target / "checkpoint"


def test_an_archive_carries_the_checkpoint_its_config_and_an_entry_module(
    checkpoint: Path, tmp_path: Path
) -> None:
    (checkpoint.parent / "trainer_state.json").write_text("{}")  # leftovers are not shipped
    options = ExportOptions(version="7", batch_size=4, max_batch_delay_ms=5, workers=2)
    info = export_archive(checkpoint, tmp_path, options)
    assert info.path == tmp_path / "detector-7.mar"
    assert (info.name, info.version) == ("detector", "7")
    with zipfile.ZipFile(info.path) as mar:
        names = set(mar.namelist())
        config = yaml.safe_load(mar.read("model-config.yaml"))
    assert {"aigis_handler.py", "MAR-INF/MANIFEST.json", "checkpoint/config.json"} <= names
    assert "checkpoint/model.safetensors" in names
    assert not any("trainer_state" in name for name in names)
    assert config["batchSize"] == 4
    assert config["maxBatchDelay"] == 5
    assert (config["minWorkers"], config["maxWorkers"]) == (2, 2)
    assert config["handler"]["architecture"] == "fused"
    assert info.handler["max_forward_batch"] == 32
    assert list(tmp_path.iterdir()) == [info.path]  # no staging left behind


def test_a_new_version_takes_every_serving_option_of_the_archive_it_replaces(
    checkpoint: Path, tmp_path: Path
) -> None:
    options = ExportOptions(
        version="3",
        batch_size=4,
        max_batch_delay_ms=7,
        workers=2,
        response_timeout_s=90,
        startup_timeout_s=300,
        max_forward_batch=16,
        max_items_per_request=64,
        threads=1,
        watermark=True,
    )
    info = export_archive(checkpoint, tmp_path, options)
    assert options_like(info.path, "detector", "4") == replace(options, version="4")
    assert options_like(None, "detector", "4") == ExportOptions(version="4")


def test_an_existing_archive_is_replaced_only_when_forced(checkpoint: Path, tmp_path: Path) -> None:
    export_archive(checkpoint, tmp_path, ExportOptions(version="1"))
    with pytest.raises(ArchiveError, match="--force"):
        export_archive(checkpoint, tmp_path, ExportOptions(version="1"))
    replaced = export_archive(
        checkpoint, tmp_path, ExportOptions(version="1", batch_size=2), force=True
    )
    assert read_manifest(replaced.path).version == "1"


def test_the_newest_version_of_each_model_is_picked(checkpoint: Path, tmp_path: Path) -> None:
    for version in ("2", "10", "9"):
        export_archive(checkpoint, tmp_path, ExportOptions(version=version))
    export_archive(checkpoint, tmp_path, ExportOptions(name="other", version="1"))
    assert [(a.name, a.version) for a in newest_archives(tmp_path)] == [
        ("detector", "10"),
        ("other", "1"),
    ]


def test_bad_options_and_inputs_are_explained(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="URLs"):
        ExportOptions(version="1/../2")
    with pytest.raises(ArchiveError, match="precision"):
        ExportOptions(precision="fp8")
    with pytest.raises(ArchiveError, match="batch_size"):
        ExportOptions(batch_size=0)
    incomplete = tmp_path / "incomplete"
    shutil.copytree(checkpoint, incomplete)
    (incomplete / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        export_archive(incomplete, tmp_path / "store")
    (tmp_path / "junk.mar").write_text("not a zip")
    with pytest.raises(ArchiveError, match="not a TorchServe model archive"):
        read_manifest(tmp_path / "junk.mar")


@pytest.mark.parametrize("bad", ["1\n", "../1", "", "a/b", "x" * 65, "a\x00"])
def test_export_refuses_names_and_versions_that_are_not_ids(bad: str) -> None:
    with pytest.raises(ArchiveError, match="cannot be used"):
        ExportOptions(version=bad)
    with pytest.raises(ArchiveError, match="cannot be used"):
        ExportOptions(name=bad, version="1")

"""Changing the version in service refuses a hostile version before it contacts anything.

TorchServe and Redis are pointed at a closed port: had a call reached them, the error would be
ServingUnavailable or ServiceChangeError, not the RegistryError these tests expect.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from aigis.promote import ServiceControl
from schemas.settings import RedisSettings, RetrainSettings, ServingSettings, Settings
from serving.client.management import ManagementClient
from training.registry import ModelVersion, Registry, RegistryError, ServiceEvent

pytestmark = pytest.mark.unit

AIGIS = str(Path(sys.executable).with_name("aigis"))
CLOSED = "127.0.0.1:9"
"""The discard port: nothing listens there, so a connection is refused at once."""
HOSTILE = ["../x", "../../victim", "/abs", "a/b", "..", "", "x" * 200, "a\x00b", "1\n"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        state_dir=tmp_path / "state",
        # checkpoints/../../victim and versions/../../victim.json would land beside it
        retrain=RetrainSettings(registry_dir=tmp_path / "registry"),
        serving=ServingSettings(
            management_url=f"http://{CLOSED}", retries=0, key_file=tmp_path / "no-keys.json"
        ),
        redis=RedisSettings(url=f"redis://{CLOSED}/0", socket_timeout_s=0.2),
    )


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    place = tmp_path / "victim"
    place.mkdir()
    (place / "keep.txt").write_text("mine")
    (tmp_path / "victim.json").write_text(
        ModelVersion(version="9", name="detector", status="registered").model_dump_json()
    )
    return place


def control(settings: Settings, registry: Registry) -> ServiceControl:
    client = ManagementClient(settings.serving, key_file=settings.serving.key_file)
    return ServiceControl(settings, registry, client)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_set_default_and_load_refuse_a_hostile_version(
    settings: Settings, victim: Path, hostile: str
) -> None:
    service = control(settings, Registry(settings.registry_dir))
    with pytest.raises(RegistryError, match="cannot be used"):
        service.activate(hostile, action="set-default")
    with pytest.raises(RegistryError, match="cannot be used"):
        service.load(hostile)
    assert (victim / "keep.txt").read_text() == "mine"


def test_rollback_refuses_a_hostile_version_planted_in_the_history(
    settings: Settings, victim: Path
) -> None:
    registry = Registry(settings.registry_dir)
    registry.record(ModelVersion(version="1", name="detector", status="registered"))
    events = settings.registry_dir / "events"
    events.mkdir(parents=True)
    for i, version in enumerate(["1", "../../victim", "1"]):
        planted = ServiceEvent(action="set-default", version=version, previous=None, namespace="")
        (events / f"000000000000{i}-planted.json").write_text(planted.model_dump_json())
    assert registry.rollback_target() == "../../victim"
    with pytest.raises(RegistryError, match="cannot be used"):
        control(settings, registry).rollback()
    assert (victim / "keep.txt").read_text() == "mine"


def hostile_archive(path: Path, version: str) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        manifest = {"model": {"modelName": "detector", "modelVersion": version}}
        archive.writestr("MAR-INF/MANIFEST.json", json.dumps(manifest))
        archive.writestr("checkpoint/config.json", "{}")
    return path


def test_the_model_commands_refuse_hostile_versions(
    settings: Settings, tmp_path: Path, victim: Path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIGIS_")},
        "AIGIS_STATE_DIR": str(settings.state_dir),
        "AIGIS_RETRAIN__REGISTRY_DIR": str(settings.registry_dir),
        "AIGIS_SERVING__MANAGEMENT_URL": settings.serving.management_url,
        "AIGIS_SERVING__RETRIES": "0",
        "AIGIS_SERVING__KEY_FILE": str(settings.serving.key_file),
        "AIGIS_REDIS__URL": settings.redis.url,
    }

    def aigis(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AIGIS, "model", *args], env=env, capture_output=True, text=True, timeout=120
        )

    for version in ("../../victim", "x" * 200):
        done = aigis("set-default", version)
        assert done.returncode == 1, done.stderr
        assert "cannot be used" in done.stderr
    archive = hostile_archive(tmp_path / "evil.mar", "../../victim")
    done = aigis("register", str(archive))
    assert done.returncode == 1, done.stderr
    assert "cannot be used" in done.stderr
    assert (victim / "keep.txt").read_text() == "mine"
    assert not (settings.registry_dir / "checkpoints").exists()
    assert not (settings.registry_dir / "archives").exists()

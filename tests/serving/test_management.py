"""Model versions through TorchServe's management API: register, set default, unregister."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from serving.client.http import ServingClient
from serving.client.management import (
    ManagementClient,
    ModelNotFoundError,
    Registered,
    VersionConflictError,
    VersionInfo,
)
from serving.client.manifest import ArchiveInfo
from serving.client.wire import ItemResult

if TYPE_CHECKING:
    from tests.serving.conftest import Served

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_second_version_is_registered_made_default_and_removed(
    torchserve: Served, second_version: ArchiveInfo, make_png: Callable[..., bytes]
) -> None:
    item = [(make_png((70, 20, 200)), "a caption")]
    management = ManagementClient(torchserve.serving, key_file=torchserve.key_file)
    client = ServingClient(torchserve.serving, key_file=torchserve.key_file)
    with management, client:
        assert management.register(second_version.path) == Registered("detector", "2")
        try:
            assert sorted(management.versions("detector"), key=lambda v: v.version) == [
                VersionInfo("1", is_default=True, workers_ready=1),
                VersionInfo("2", is_default=False, workers_ready=1),
            ]
            management.set_default("detector", "2")
            assert management.default_version("detector") == "2"
            assert client.model_info().version == "2"
            [answer] = client.predict(item)
            assert isinstance(answer, ItemResult)
            assert answer.model_version == "2"
            with pytest.raises(VersionConflictError, match="another version the default"):
                management.unregister("detector", "2")
        finally:
            management.set_default("detector", "1")  # the rollback `aigis model` performs
        management.unregister("detector", "2")
        assert [v.version for v in management.versions("detector")] == ["1"]
        [answer] = client.predict(item)
        assert isinstance(answer, ItemResult)
        assert answer.model_version == "1"


def test_registering_a_registered_version_is_a_conflict(torchserve: Served) -> None:
    with ManagementClient(torchserve.serving, key_file=torchserve.key_file) as management:
        with pytest.raises(VersionConflictError, match="another --version"):
            management.register(torchserve.archive.path)
        assert management.list_models() == ["detector"]


def test_unknown_models_and_archives_are_not_found(torchserve: Served, tmp_path: Path) -> None:
    with ManagementClient(torchserve.serving, key_file=torchserve.key_file) as management:
        with pytest.raises(ModelNotFoundError, match="aigis model list"):
            management.describe("no-such-model")
        with pytest.raises(ModelNotFoundError, match="aigis export"):
            management.register(tmp_path / "missing" / "detector-9.mar")


def test_describe_reports_batching_workers_and_the_handlers_metadata(torchserve: Served) -> None:
    with ManagementClient(torchserve.serving, key_file=torchserve.key_file) as management:
        [described] = management.describe("detector", "1", customized=True)
    assert (described.batch_size, described.max_batch_delay_ms) == (8, 100)
    assert described.workers_ready == 1
    assert described.customized is not None
    assert described.customized["architecture"] == "fused"


def test_scale_sets_the_worker_range_of_a_version(torchserve: Served) -> None:
    with ManagementClient(torchserve.serving, key_file=torchserve.key_file) as management:
        management.scale("detector", "1", min_workers=1, max_workers=2)
        try:
            [described] = management.describe("detector", "1")
            assert (described.min_workers, described.max_workers) == (1, 2)
        finally:
            management.scale("detector", "1", min_workers=1)
        [described] = management.describe("detector", "1")
    assert (described.min_workers, described.max_workers, described.workers_ready) == (1, 1, 1)

"""Canary versions against a real TorchServe serving two tiny versions side by side, real Kafka
and Redis: version 1 answers "human" for every image, version 2 "AI, SDXL", so which version
answered each verdict shows in the verdict, and the two never agree."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from PIL import Image

from aigis.canary import CanaryControl
from aigis.promote import ServiceControl
from schemas import Decision, ImageEvent
from schemas.canary import CanaryError, canary_key, in_slice
from schemas.settings import Settings
from serving.client.management import ManagementClient
from serving.client.manifest import ArchiveInfo
from serving.torchserve.archive import ExportOptions, export_archive
from serving.torchserve.server import running_torchserve
from tests.aigis.forced import forced_checkpoint
from tests.streams import (
    CountingClient,
    WorkerThread,
    drain,
    publish_events,
    quick_worker,
    run_worker,
    subprocess_env,
)
from training.registry import Registry
from worker.cache import cache_key, sha256_hex

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXPORT = ExportOptions(batch_size=8, max_batch_delay_ms=10, max_forward_batch=8)
AIGIS = str(Path(sys.executable).with_name("aigis"))


@pytest.fixture(scope="module")
def versions(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ArchiveInfo, ArchiveInfo]]:
    """Version 1 (in the model store TorchServe starts with) and version 2 (kept elsewhere:
    registered by the canary), TorchServe running."""
    root = tmp_path_factory.mktemp("canary")
    store = root / "model-store"
    human = export_archive(
        forced_checkpoint(root / "v1", "1", ai=False), store, replace(EXPORT, version="1")
    )
    ai = export_archive(
        forced_checkpoint(root / "v2", "2", ai=True),
        root / "elsewhere",
        replace(EXPORT, version="2"),
    )
    with running_torchserve(settings, store):
        yield human, ai


@pytest.fixture
def canary_settings(
    isolated_settings: Settings,
    redis_prefix: str,
    tmp_path: Path,
    versions: tuple[ArchiveInfo, ArchiveInfo],
) -> Settings:
    s = isolated_settings
    return s.model_copy(
        update={
            "redis": s.redis.model_copy(update={"key_prefix": redis_prefix}),
            "retrain": s.retrain.model_copy(update={"registry_dir": tmp_path / "registry"}),
            "worker": quick_worker(
                s,
                "canary-test",
                batch_size=8,
                canary_refresh_s=0.5,
                drift_window=4,  # small: drift is reported within the first test
            ),
        }
    )


@pytest.fixture
def control(
    canary_settings: Settings, versions: tuple[ArchiveInfo, ArchiveInfo]
) -> Iterator[ServiceControl]:
    """Version 1 in service in a fresh registry that also holds version 2's archive."""
    registry = Registry(canary_settings.registry_dir)
    human, ai = versions
    registry.add_archive(human.path)
    registry.add_archive(ai.path, parent="1")
    with ManagementClient(
        canary_settings.serving, key_file=canary_settings.serving_key_file
    ) as client:
        service = ServiceControl(canary_settings, registry, client)
        service.activate("1", action="register")
        yield service


def images(prefix: str, count: int) -> list[ImageEvent]:
    """``count`` distinct small PNGs as events (each colour once per prefix)."""
    seed = sum(prefix.encode())
    events = []
    for i in range(count):
        colour = ((seed * 7 + i * 37) % 256, (i * 91 + seed) % 256, (i * 13 + 3 * seed) % 256)
        buffer = io.BytesIO()
        Image.new("RGB", (40 + i % 7, 32 + i % 5), colour).save(buffer, format="PNG")
        events.append(ImageEvent.inline(f"{prefix}-{i}", buffer.getvalue()))
    return events


def sha(event: ImageEvent) -> str:
    data = event.inline_bytes()
    assert data is not None
    return sha256_hex(data)


def test_the_slice_follows_the_image_hash_and_each_verdict_names_the_version_that_answered(
    canary_settings: Settings, control: ServiceControl, redis_client: redis.Redis
) -> None:
    canaries = CanaryControl(canary_settings, control)
    canaries.start("2", 40.0)
    events = images("first", 40)
    chosen = {e.event_id: in_slice(sha(e), 40.0) for e in events}
    assert 0 < sum(chosen.values()) < len(events)
    publish_events(canary_settings, events)
    client = CountingClient(canary_settings)
    run_worker(canary_settings, client=client)
    verdicts = drain(canary_settings, "verdicts", expect=len(events), finished=True)
    assert len(verdicts) == len(events)
    for v in verdicts:
        expected = ("2", Decision.AI_GENERATED) if chosen[v.event_id] else ("1", Decision.HUMAN)
        assert (v.model_version, v.decision) == expected, v.event_id
    # The slice is scored by both versions (the comparison's cost), the rest once.
    assert client.items_sent == len(events) + sum(chosen.values())

    # Each answer is cached in the namespace of the version that gave it, never the other's.
    prefix = canary_settings.redis.key_prefix
    by_event = {v.event_id: v for v in verdicts}
    for e in events:
        mine, other = ("2", "1") if chosen[e.event_id] else ("1", "2")
        labels = tuple(by_event[e.event_id].generator_probs)
        assert redis_client.keys(cache_key(prefix, mine, labels, sha(e)) + "*")
        assert not redis_client.keys(f"{prefix}:{other}:*:{sha(e)}*")

    status = canaries.status()
    assert status["items"] == sum(chosen.values())
    assert status["agreement"] == 0.0
    assert status["p_ai_shift"] > 0.9
    assert status["review_rate_default"] == status["review_rate_candidate"] == 0.0

    # The command line reads the same tally.
    env = {
        **subprocess_env(canary_settings),
        "AIGIS_RETRAIN__REGISTRY_DIR": str(canary_settings.registry_dir),
    }
    shown = subprocess.run(
        [AIGIS, "model", "canary", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(shown.stdout)["items"] == status["items"]

    # `aigis model status` shows the canary, and the drift the worker kept in Redis for both
    # answering versions (source "none": the events name none).
    shown = subprocess.run(
        [AIGIS, "model", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    model_status = json.loads(shown.stdout)
    assert model_status["in_service"] == "1"
    assert model_status["canary"] == {"version": "2", "percent": 40.0, "compared_with": "1"}
    drift = {(r["model_version"], r["source"], r["statistic"]) for r in model_status["drift"]}
    assert {("1", "none", "p_ai"), ("2", "none", "generator")} <= drift
    assert all(r["workers"] == 1 and r["psi"] >= 0.0 for r in model_status["drift"])

    # Replayed, every image is answered from its own version's cache: the same way as before.
    again = [ImageEvent.inline(f"again-{i}", e.inline_bytes() or b"") for i, e in enumerate(events)]
    publish_events(canary_settings, again)
    client.items_sent = 0
    run_worker(canary_settings, client=client)
    assert client.items_sent == 0
    replayed = [
        v
        for v in drain(canary_settings, "verdicts", expect=2 * len(events), finished=True)
        if v.event_id.startswith("again")
    ]
    by_sha = {sha(e): chosen[e.event_id] for e in events}
    assert len(replayed) == len(events)
    assert all(v.cached and (v.model_version == "2") == by_sha[v.image_sha256] for v in replayed)

    # Promotion puts version 2 in service and ends the canary.
    event = canaries.promote()
    assert (event.version, event.previous) == ("2", "1")
    assert control.default_version() == "2"
    assert control.namespace() == "2"
    assert canaries.state() is None
    with pytest.raises(CanaryError, match="no canary is running"):
        canaries.status()
    later = images("later", 8)
    publish_events(canary_settings, later)
    run_worker(canary_settings)
    after = [
        v
        for v in drain(
            canary_settings, "verdicts", expect=2 * len(events) + len(later), finished=True
        )
        if v.event_id.startswith("later")
    ]
    assert len(after) == len(later)
    assert all(v.model_version == "2" for v in after)


def test_a_running_worker_follows_a_start_and_an_abort_without_restart(
    canary_settings: Settings, control: ServiceControl, redis_client: redis.Redis
) -> None:
    canaries = CanaryControl(canary_settings, control)
    seen: list[object] = []

    def wait_for(prefix: str, count: int) -> list[object]:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            found = [
                v
                for v in drain(canary_settings, "verdicts", expect=len(seen) + count, timeout_s=5)
                if v.event_id.startswith(prefix)
            ]
            if len(found) >= count:
                seen.extend(found)
                return found
        pytest.fail(f"{count} verdicts of {prefix} did not arrive")

    with WorkerThread(canary_settings):
        before = images("before", 12)
        publish_events(canary_settings, before)
        assert all(v.model_version == "1" for v in wait_for("before", 12))  # type: ignore[attr-defined]

        canaries.start("2", 50.0)
        time.sleep(1.5)  # three of the worker's re-reads of the canary
        during = images("during", 24)
        chosen = {e.event_id: in_slice(sha(e), 50.0) for e in during}
        publish_events(canary_settings, during)
        for v in wait_for("during", len(during)):
            assert (v.model_version == "2") == chosen[v.event_id]  # type: ignore[attr-defined]

        stopped = canaries.abort()
        assert stopped is not None
        assert stopped.version == "2"
        assert redis_client.get(canary_key(canary_settings.redis.key_prefix)) is None
        assert "2" not in control.served_versions()  # unregistered
        assert control.default_version() == "1"
        after = images("aborted", 24)
        publish_events(canary_settings, after)
        assert all(v.model_version == "1" for v in wait_for("aborted", len(after)))  # type: ignore[attr-defined]


def test_refusals_say_what_to_do(canary_settings: Settings, control: ServiceControl) -> None:
    canaries = CanaryControl(canary_settings, control)
    with pytest.raises(CanaryError, match="default already"):
        canaries.start("1", 5.0)
    with pytest.raises(CanaryError, match="not in"):
        canaries.start("2", 0.0)
    with pytest.raises(CanaryError, match="no canary is running"):
        canaries.promote()
    canaries.start("2", 5.0)
    with pytest.raises(CanaryError, match="already the canary"):
        canaries.start("3", 5.0)
    assert canaries.start("2", 10.0).percent == 10.0  # the same candidate: a new share
    ended = canaries.abort(keep=True)
    assert ended is not None
    assert "2" in control.served_versions()
    # A state no one can read is reported, and abort removes it.
    key = canary_key(canary_settings.redis.key_prefix)
    control.redis.set(key, b"\xff not a canary")
    with pytest.raises(CanaryError, match="cannot be read"):
        canaries.status()
    assert canaries.abort() is None
    assert control.redis.get(key) is None
    with pytest.raises(CanaryError, match="no canary is running"):
        canaries.abort()


def test_a_candidate_that_cannot_answer_leaves_the_slice_to_the_default(
    canary_settings: Settings, control: ServiceControl
) -> None:
    canaries = CanaryControl(canary_settings, control)
    canaries.start("2", 50.0)
    control.unregister("2")  # gone from TorchServe behind the canary's back
    events = images("orphan", 12)
    assert any(in_slice(sha(e), 50.0) for e in events)
    publish_events(canary_settings, events)
    _, stats = run_worker(canary_settings)
    assert stats.verdicts == len(events)  # nothing held back, nothing dead-lettered
    verdicts = drain(canary_settings, "verdicts", expect=len(events), finished=True)
    assert {v.model_version for v in verdicts} == {"1"}
    assert canaries.status()["items"] == 0  # nothing was compared
    canaries.abort(keep=True)

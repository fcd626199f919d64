"""Fixtures of the worker tests: one TorchServe with a tiny model for the package, and fresh
topics, group and cache prefix per test. Helpers are in :mod:`tests.streams`.

TorchServe runs on the ``AIGIS_SERVING__*`` ports and is stopped when the package is done, so
another package can start its own on the same ports.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from schemas.settings import Settings
from serving.torchserve.archive import ExportOptions, export_random
from serving.torchserve.server import TorchServe

# Small server batches that form quickly: the tests send few items at a time. The watermark is
# read (images under 512 pixels a side, the smoke set's, are not: they cost nothing).
EXPORT = ExportOptions(
    version="1", batch_size=8, max_batch_delay_ms=10, max_forward_batch=8, watermark=True
)


@dataclass(frozen=True)
class Served:
    server: TorchServe
    store: Path


@pytest.fixture(scope="package")
def torchserve(kafka_ready: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """TorchServe serving version 1 of a tiny fused detector, READY."""
    store = tmp_path_factory.mktemp("worker-model-store")
    export_random(store, EXPORT)
    server = TorchServe(kafka_ready)
    server.start(store)
    try:
        yield Served(server, store)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def smoke_images() -> list[tuple[bytes, str | None]]:
    """Distinct (image, caption) pairs of the smoke test split."""
    from training.data import load_split

    samples = load_split("smoke", "test", normalise=False, require_labels=False)
    unique = {s.sha256: (s.image, s.caption) for s in samples}
    return list(unique.values())[:80]


@pytest.fixture
def worker_settings(
    isolated_settings: Settings, redis_prefix: str, torchserve: Served, tmp_path: Path
) -> Settings:
    """Fresh topics, group and cache prefix; quick retries; small batches; no metrics port;
    ``file://`` URIs admitted under the test's ``tmp_path`` only."""
    s = isolated_settings
    return s.model_copy(
        update={
            "fetch": s.fetch.model_copy(update={"file_roots": (tmp_path,)}),
            "redis": s.redis.model_copy(update={"key_prefix": redis_prefix}),
            "serving": s.serving.model_copy(
                update={"retries": 0, "backoff_initial_s": 0.05, "backoff_max_s": 0.5}
            ),
            "worker": s.worker.model_copy(
                update={
                    "batch_size": 16,
                    "batch_timeout_ms": 50,
                    "metrics_port": 0,
                    "session_timeout_ms": 6_000,
                    "serving_backoff_max_s": 1.0,
                    "instance_id": "test",
                }
            ),
        }
    )

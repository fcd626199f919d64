"""Fixtures of the serving tests: tiny archives and one real TorchServe for the package.

TorchServe takes a while to start on two cores, so one instance (token authorisation on, ports
from the ``AIGIS_SERVING__*`` settings) serves every test of this package and stops when the
package is done, before another package may start its own on the same ports. Other packages
start theirs with :func:`serving.torchserve.archive.export_random` and
:func:`serving.torchserve.server.running_torchserve`.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from schemas.settings import ServingSettings, Settings
from serving.client.manifest import ArchiveInfo
from serving.torchserve.archive import ExportOptions, export_random
from serving.torchserve.handler import DetectorHandler
from serving.torchserve.server import TorchServe
from tests.serving.handler_support import handler_context

# Batches form reliably when requests may wait a little for each other.
TEST_EXPORT = ExportOptions(version="1", batch_size=8, max_batch_delay_ms=100, max_forward_batch=4)


@dataclass(frozen=True)
class Served:
    """A running TorchServe and what tests need to talk to it."""

    server: TorchServe
    settings: Settings
    store: Path
    archive: ArchiveInfo

    @property
    def serving(self) -> ServingSettings:
        """Serving settings with quick retries, so failures show in seconds."""
        return self.settings.serving.model_copy(
            update={"retries": 2, "backoff_initial_s": 0.05, "backoff_max_s": 0.5}
        )

    @property
    def key_file(self) -> Path:
        return self.settings.serving_key_file


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding version 1 of a tiny fused detector named ``detector``."""
    store = tmp_path_factory.mktemp("model-store")
    export_random(store, TEST_EXPORT)
    return store


@pytest.fixture(scope="session")
def second_version(tmp_path_factory: pytest.TempPathFactory) -> ArchiveInfo:
    """Version 2 of the same model, kept outside the store (registered by path)."""
    elsewhere = tmp_path_factory.mktemp("incoming")
    options = ExportOptions(**{**TEST_EXPORT.__dict__, "version": "2"})
    return export_random(elsewhere, options)


@pytest.fixture(scope="package")
def torchserve(settings: Settings, model_store: Path) -> Iterator[Served]:
    """TorchServe with token authorisation, serving version 1, READY."""
    server = TorchServe(settings)
    [archive] = server.start(model_store)
    try:
        yield Served(server, settings, model_store, archive)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def make_png() -> Callable[..., bytes]:
    """``make_png((r, g, b), size=(48, 40))``: a small PNG of one colour."""
    return _png


@pytest.fixture(scope="session")
def bomb_png() -> bytes:
    """A few kilobytes of PNG declaring 100 M pixels: a decompression bomb."""
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, format="PNG")
    return buffer.getvalue()


def _png(colour: tuple[int, int, int], size: tuple[int, int] = (48, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def model_dir(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store's archive extracted, as TorchServe extracts it for a worker."""
    target = tmp_path_factory.mktemp("extracted")
    [archive] = model_store.glob("*.mar")
    with zipfile.ZipFile(archive) as mar:
        mar.extractall(target)
    return target


@pytest.fixture(scope="module")
def handler(model_dir: Path) -> DetectorHandler:
    loaded = DetectorHandler()
    loaded.initialize(handler_context(model_dir))
    return loaded


@pytest.fixture
def serve(handler: DetectorHandler, model_dir: Path) -> Callable[..., tuple[list[Any], list[int]]]:
    """Run one server batch; return the decoded answers and their HTTP statuses."""

    def run(*bodies: Any) -> tuple[list[Any], list[int]]:
        context = handler_context(model_dir, rows=len(bodies))
        answers = handler.handle([{"body": body} for body in bodies], context)
        statuses = [context.get_response_status(i)[0] for i in range(len(bodies))]
        return [json.loads(answer) for answer in answers], statuses

    return run

"""An archive of each exported backend, through a real TorchServe: it carries its int8 encoders,
says which backend serves it, and scores like the same checkpoint in process."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from PIL import Image

from serving.client.http import ServingClient
from serving.client.management import ManagementClient
from serving.client.wire import ItemError, ItemResult
from serving.model.predictor import Predictor
from serving.torchserve.archive import ExportOptions, export_random

if TYPE_CHECKING:
    from tests.serving.conftest import Served

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize(
    ("backend", "graphs"),
    [
        ("onnxruntime", {"encoders/vision.onnx", "encoders/text.onnx"}),
        # OpenVINO's own int8 (NNCF), calibrated on synthetic inputs when exported for an archive
        ("openvino", {"encoders/vision.xml", "encoders/vision.bin", "encoders/text.xml"}),
    ],
)
def test_an_int8_archive_is_served_and_scores_like_in_process(
    torchserve: Served,
    tmp_path: Path,
    make_png: Callable[..., bytes],
    backend: str,
    graphs: set[str],
) -> None:
    options = ExportOptions(name="detector-int8", version="1", backend=backend, precision="int8")
    info = export_random(tmp_path / "store", options)
    with zipfile.ZipFile(info.path) as archive:
        names = set(archive.namelist())
        handler = yaml.safe_load(archive.read("model-config.yaml"))["handler"]
        archive.extractall(tmp_path / "unpacked")
    assert graphs <= names
    assert (handler["backend"], handler["precision"]) == (backend, "int8")

    images = [make_png((40 * i, 90, 200 - 30 * i)) for i in range(5)]
    captions = ["a cat", None, "a much longer caption about two dogs on a beach", "", "car"]
    items = [*zip(images, captions, strict=True), (b"not an image", "broken")]
    served = torchserve.serving.model_copy(update={"model_name": "detector-int8"})
    management = ManagementClient(torchserve.serving, key_file=torchserve.key_file)
    client = ServingClient(served, key_file=torchserve.key_file)
    with management, client:
        management.register(info.path)
        try:
            answers = client.predict(items)
        finally:
            management.unregister("detector-int8", "1")
    *scored, broken = answers
    assert isinstance(broken, ItemError)
    assert broken.reason == "undecodable_image"

    local = Predictor.from_checkpoint(
        tmp_path / "unpacked" / "checkpoint",
        device="cpu",
        backend=backend,
        precision="int8",
        encoders=tmp_path / "unpacked" / "encoders",
    )
    pictures = [Image.open(io.BytesIO(data)).convert("RGB") for data in images]
    expected = local.predict(pictures, captions)
    for answer, prediction in zip(scored, expected, strict=True):
        assert isinstance(answer, ItemResult)
        assert answer.model_name == "detector-int8"
        # Int8 activations are quantised per batch, and the server may batch differently.
        assert answer.p_ai == pytest.approx(prediction.p_ai, abs=0.01)

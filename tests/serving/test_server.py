"""Starting, inspecting and stopping TorchServe."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote
from xml.etree import ElementTree

import httpx
import pytest

from schemas.settings import ServingSettings, Settings
from serving.client.http import ServingClient
from serving.client.transport import ServingUnavailable
from serving.torchserve.layout import (
    LOG_CONFIG,
    ServerError,
    ServerPaths,
    jvm_command,
    render_config,
)
from serving.torchserve.server import TorchServe

if TYPE_CHECKING:
    from tests.serving.conftest import Served


@pytest.mark.unit
def test_config_binds_the_settings_addresses_with_auth_and_size_limits() -> None:
    settings = Settings(
        serving=ServingSettings(
            inference_url="http://127.0.0.1:28080",
            management_url="http://127.0.0.1:28081",
            metrics_url="http://127.0.0.1:28082",
            max_request_mb=32,
        )
    )
    lines = set(render_config(settings, auth=True).splitlines())
    assert {
        "inference_address=http://127.0.0.1:28080",
        "management_address=http://127.0.0.1:28081",
        "metrics_address=http://127.0.0.1:28082",
        "grpc_inference_address=127.0.0.1",
        "grpc_inference_port=28090",
        "grpc_management_port=28091",
        "metrics_mode=prometheus",
        "disable_token_authorization=false",
        "enable_model_api=true",
        f"max_request_size={32 * 1024 * 1024}",
    } <= lines
    assert "disable_token_authorization=true" in render_config(settings, auth=False)


@pytest.mark.unit
def test_start_explains_an_empty_or_missing_store(tmp_path: Path) -> None:
    server = TorchServe(Settings(state_dir=tmp_path / "state"))
    with pytest.raises(ServerError, match=r"holds no \.mar archive"):
        server.start(tmp_path)
    with pytest.raises(ServerError, match="not a directory"):
        server.start(tmp_path / "missing")
    assert server.stop() is False


@pytest.mark.integration
@pytest.mark.slow
def test_start_returned_with_workers_ready_and_status_shows_them(torchserve: Served) -> None:
    status = torchserve.server.status()
    assert status.running
    assert status.pid == torchserve.server.pid()
    assert status.auth is True
    assert status.defaults == {"detector": "1"}
    assert [(d.name, d.version, d.workers_ready) for d in status.models] == [("detector", "1", 1)]
    assert status.problem is None
    assert torchserve.key_file.stat().st_mode & 0o777 == 0o600  # a secret: owner only
    assert (torchserve.server.paths.logs / "ts_log.log").is_file()


@pytest.mark.integration
@pytest.mark.slow
def test_metrics_count_scored_and_refused_items_in_prometheus_format(
    torchserve: Served, make_png: Callable[..., bytes]
) -> None:
    with ServingClient(torchserve.serving, key_file=torchserve.key_file) as client:
        client.predict([(make_png((3, 3, 3)), None), (b"not an image", None)])
    metrics = httpx.get(f"{torchserve.settings.serving.metrics_url}/metrics", timeout=10)
    assert metrics.status_code == 200
    assert "# TYPE ItemsScored counter" in metrics.text
    assert 'ItemErrors{Reason="undecodable_image"' in metrics.text
    assert "ts_inference_requests_total" in metrics.text


@pytest.mark.integration
@pytest.mark.slow
def test_a_second_start_and_a_taken_port_are_refused(torchserve: Served, tmp_path: Path) -> None:
    with pytest.raises(ServerError, match="already running"):
        torchserve.server.start(torchserve.store)
    elsewhere = TorchServe(torchserve.settings.model_copy(update={"state_dir": tmp_path}))
    with pytest.raises(ServerError, match="is taken by another process"):
        elsewhere.start(torchserve.store)


@pytest.mark.integration
@pytest.mark.slow
def test_an_archive_that_cannot_load_stops_the_start_with_the_reason(
    torchserve: Served, tmp_path: Path
) -> None:
    """Weights that are not weights: start reads TorchServe's log (as its own logging
    configuration writes it), stops the server again and says why, rather than waiting out the
    start timeout."""
    store = tmp_path / "store"
    store.mkdir()
    with (
        zipfile.ZipFile(torchserve.archive.path) as source,
        zipfile.ZipFile(store / torchserve.archive.path.name, "w") as broken,
    ):
        for entry in source.infolist():
            data = source.read(entry)
            if entry.filename.endswith("model.safetensors"):
                data = b"not a safetensors file"
            broken.writestr(entry, data)
    ports = {"inference_url": 28180, "management_url": 28181, "metrics_url": 28182}
    serving = torchserve.settings.serving.model_copy(
        update={
            **{key: f"http://127.0.0.1:{port}" for key, port in ports.items()},
            "key_file": tmp_path / "key_file.json",  # never the package server's
        }
    )
    server = TorchServe(
        torchserve.settings.model_copy(update={"state_dir": tmp_path, "serving": serving})
    )
    started = time.monotonic()
    try:
        with pytest.raises(ServerError, match="could not load a model") as caught:
            server.start(store, timeout_s=240)
        assert time.monotonic() - started < 120
        assert "safetensors" in str(caught.value)
        assert server.stop() is False  # stopped already
    finally:
        server.stop()
    access = (tmp_path / "torchserve" / "logs" / "access_log.log").read_text()
    assert "GET /models" in access  # the access log is still written


@pytest.mark.integration
@pytest.mark.slow
def test_stopping_the_server_mid_stream_is_unavailable_quickly_not_a_hang(
    torchserve: Served, make_png: Callable[..., bytes]
) -> None:
    items: list[tuple[bytes, str | None]] = [(make_png((40, 40, 40)), None)] * 8
    outcome: dict[str, object] = {}
    client = ServingClient(torchserve.serving, key_file=torchserve.key_file)

    def stream() -> None:
        try:
            while True:
                client.predict_many(items, request_items=2, max_in_flight=2)
        except ServingUnavailable as exc:
            outcome["error"] = exc
            outcome["at"] = time.monotonic()

    streaming = threading.Thread(target=stream, daemon=True)
    streaming.start()
    time.sleep(1.0)
    pid = torchserve.server.pid()
    try:
        assert torchserve.server.stop() is True
        stopped_at = time.monotonic()
        assert not Path(f"/proc/{pid}").exists(), "stop() returned while the JVM was alive"
        streaming.join(timeout=20)
        assert isinstance(outcome.get("error"), ServingUnavailable)
        assert float(outcome["at"]) - stopped_at < 10  # type: ignore[arg-type]
        assert client.ready() is False
    finally:
        client.close()
        # The other tests of the package need it back, serving what it served.
        torchserve.server.start(torchserve.store, models=[torchserve.archive.path.name])


@pytest.mark.integration
@pytest.mark.slow
def test_an_image_sent_the_way_torchserve_examples_send_it_is_scored(
    torchserve: Served, make_png: Callable[..., bytes]
) -> None:
    """``curl -T kitten.jpg .../predictions/detector`` (a PUT of the file), the same with an
    ``X-Caption`` header, and ``curl -F data=@kitten.jpg -F caption=...`` (a form)."""
    image = make_png((120, 40, 220))
    caption = "a cat \u00e0 la plage"
    keys = json.loads(torchserve.key_file.read_text())
    auth = {"Authorization": f"Bearer {keys['inference']['key']}"}
    url = f"{torchserve.settings.serving.inference_url}/predictions/detector"
    with ServingClient(torchserve.serving, key_file=torchserve.key_file) as client:
        [plain, captioned] = client.predict([(image, None), (image, caption)])
    put = httpx.put(url, content=image, headers=auth, timeout=30)
    put_captioned = httpx.put(
        url, content=image, headers={**auth, "X-Caption": quote(caption)}, timeout=30
    )
    form = httpx.post(
        url,
        files={"data": ("kitten.png", image)},
        data={"caption": caption},
        headers=auth,
        timeout=30,
    )
    for response in (put, put_captioned, form):
        assert response.status_code == 200, response.text
    assert put.json()["p_ai"] == pytest.approx(plain.p_ai, abs=1e-5)
    assert put_captioned.json()["p_ai"] == pytest.approx(captioned.p_ai, abs=1e-5)
    assert form.json()["p_ai"] == pytest.approx(captioned.p_ai, abs=1e-5)


@pytest.mark.integration
@pytest.mark.slow
def test_each_request_is_logged_once_in_the_access_log_and_not_in_the_servers_own(
    torchserve: Served, make_png: Callable[..., bytes]
) -> None:
    logs = torchserve.server.paths.logs
    before = {name: _size(logs / name) for name in ("ts_log.log", "access_log.log")}
    with ServingClient(torchserve.serving, key_file=torchserve.key_file) as client:
        for _ in range(5):
            client.predict([(make_png((10, 200, 30)), "five requests")])
    # The access line is written before the answer is sent; the server's own lines of the
    # same requests may come a moment later, so they are read once the access lines are in.
    access_lines = _read_from(logs / "access_log.log", before["access_log.log"])
    assert access_lines.count("POST /predictions/detector") == 5
    time.sleep(0.5)
    server_lines = _read_from(logs / "ts_log.log", before["ts_log.log"])
    for per_request in ("Backend response time", "Sending response", "Waiting time ns"):
        assert per_request not in server_lines
    assert "/predictions/detector" not in server_lines  # the access log's line, not twice


@pytest.mark.integration
@pytest.mark.slow
def test_a_worker_that_dies_is_logged_and_comes_back(torchserve: Served) -> None:
    """TorchServe's own logging keeps what an operator needs when a worker process dies (what
    the server logs at INFO), though the lines of every request are gone."""
    logs = torchserve.server.paths.logs
    before = _size(logs / "ts_log.log")
    jvm = torchserve.server.pid()
    assert jvm is not None
    [worker] = _children(jvm, "model_service_worker")
    os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while "Worker disconnected" not in _read_from(logs / "ts_log.log", before):
        assert time.monotonic() < deadline, _read_from(logs / "ts_log.log", before)[-2000:]
        time.sleep(0.2)
    torchserve.server.wait_ready(["detector"], timeout_s=120)  # back for the tests after this
    assert "Retry worker" in _read_from(logs / "ts_log.log", before)
    assert _children(jvm, "model_service_worker") != [worker]


@pytest.mark.unit
def test_torchserve_runs_with_the_logging_configuration_shipped_with_aigis(tmp_path: Path) -> None:
    """Without it TorchServe would log only errors to the console: no ts_log.log, so a model
    that cannot load would wait out the start timeout instead of being reported."""
    assert LOG_CONFIG.is_file()
    loggers = ElementTree.parse(LOG_CONFIG).getroot().find("Loggers")  # noqa: S314  # our file
    assert loggers is not None
    assert {e.get("name") for e in loggers} >= {"ACCESS_LOG", "MODEL_LOG", "org.pytorch.serve"}
    settings = Settings(state_dir=tmp_path)
    command = jvm_command(settings, ServerPaths.of(settings), tmp_path, ["detector-1.mar"])
    assert f"-Dlog4j.configurationFile={LOG_CONFIG}" in command


@pytest.mark.unit
def test_the_jvm_compiles_with_c1_only_unless_told_to_use_both_compilers(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    paths = ServerPaths.of(settings)
    command = jvm_command(settings, paths, tmp_path, ["detector-1.mar"])
    assert command.index("-XX:TieredStopAtLevel=1") < command.index("-cp")
    tiered = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"java_jit": "tiered"})}
    )
    assert not any("Tiered" in a for a in jvm_command(tiered, paths, tmp_path, ["d-1.mar"]))


def _children(parent: int, marker: str) -> list[int]:
    """Pids of ``parent``'s child processes whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().decode("utf-8", "replace")
        except OSError:
            continue  # gone meanwhile
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and marker in command:
            found.append(int(entry.name))
    return found


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _read_from(path: Path, offset: int) -> str:
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode("utf-8", "replace")

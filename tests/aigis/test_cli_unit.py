"""Command-line behaviour that needs no service: settings errors, dev status, serve start."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigis.cli import app
from aigis.devstack.redis_server import RedisServer
from aigis.devstack.service import State
from schemas.settings import RedisSettings, Settings, load_settings

pytestmark = pytest.mark.unit


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """An environment without the test run's AIGIS_* variables; settings read afresh."""
    for name in list(os.environ):
        if name.startswith("AIGIS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AIGIS_STATE_DIR", str(tmp_path))
    load_settings.cache_clear()
    yield monkeypatch
    load_settings.cache_clear()


def test_the_cli_names_the_variable_and_the_groups_and_exits_2(env: pytest.MonkeyPatch) -> None:
    env.setenv("AIGIS_WORKR__BATCH_SIZE", "64")
    result = CliRunner().invoke(app, ["dev", "status"])
    assert result.exit_code == 2
    assert "invalid settings" in result.output
    assert "AIGIS_WORKR__BATCH_SIZE: no such settings group" in result.output
    assert "WORKER" in result.output


def test_status_names_the_state_dir_and_offset(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Port 1 on loopback: nothing listens, so both services read as stopped.
    env.setenv("AIGIS_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    env.setenv("AIGIS_REDIS__URL", "redis://127.0.0.1:1/0")
    env.setenv("AIGIS_DEV__PORT_OFFSET", "40000")
    result = CliRunner().invoke(app, ["dev", "status"])
    assert result.exit_code == 1
    assert f"state dir   {tmp_path}" in result.output
    assert "port offset 40000" in result.output
    assert "started here" in result.output


def test_a_listener_we_did_not_start_is_not_ours(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        settings = Settings(
            state_dir=tmp_path, redis=RedisSettings(url=f"redis://127.0.0.1:{port}/0")
        )
        server = RedisServer(settings)
        server.pid_file.parent.mkdir(parents=True)
        server.pid_file.write_text(f"{os.getpid()}\n")  # a live pid that is not redis
        status = server.status()
    assert status.state is State.FOREIGN
    assert status.started_here is False
    assert status.pid is None


def test_nothing_running_is_nobody_s(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, redis=RedisSettings(url="redis://127.0.0.1:1/0"))
    status = RedisServer(settings).status()
    assert status.state is State.STOPPED
    assert status.started_here is None


def test_serve_start_checks_the_store_before_anything_else(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app, ["serve", "start", "--model-store", str(tmp_path / "no-such-store")]
    )
    assert result.exit_code == 1
    assert "no-such-store is not a directory" in result.output
    assert "starting TorchServe" not in result.output
    assert not (tmp_path / "torchserve").exists()


def _state(tmp_path: Path) -> Path:
    """A state dir with files of every kind, nothing running."""
    state = tmp_path / "state"
    for part in ("kafka/data", "redis", "registry/detector", "labels/shards", "torchserve/logs"):
        (state / part).mkdir(parents=True)
        (state / part / "file").write_text("x")
    return state


def _down(env: pytest.MonkeyPatch, state: Path, *flags: str) -> str:
    env.setenv("AIGIS_STATE_DIR", str(state))
    env.setenv("AIGIS_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    env.setenv("AIGIS_REDIS__URL", "redis://127.0.0.1:1/0")
    load_settings.cache_clear()
    result = CliRunner().invoke(app, ["dev", "down", *flags])
    assert result.exit_code == 0, result.output
    return result.output


def test_purge_says_what_it_deletes_and_keeps(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    state = _state(tmp_path)
    output = _down(env, state, "--purge")
    assert f"deleted {state / 'kafka'} (its topics, data and logs)" in output
    assert f"deleted {state / 'redis'}" in output
    assert "kept" in output
    assert "--all" in output
    assert sorted(p.name for p in state.iterdir()) == ["labels", "registry", "torchserve"]


def test_all_deletes_the_model_state_of_the_state_dir_only(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state = _state(tmp_path)
    outside = tmp_path / "elsewhere-registry"
    outside.mkdir()
    env.setenv("AIGIS_RETRAIN__REGISTRY_DIR", str(outside))
    output = _down(env, state, "--all")
    assert f"deleted {state / 'labels'}" in output
    assert f"deleted {state / 'torchserve'}" in output
    assert f"kept {outside}: it is outside the state dir" in output
    assert outside.is_dir()
    assert sorted(p.name for p in state.iterdir()) == ["registry"]

"""`aigis dev up | down | status` as an operator runs them: a separate process, real services."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aigis.devstack import kafka_dist
from schemas.settings import Settings
from serving import procs
from worker import kafka

pytestmark = pytest.mark.integration

AIGIS = str(Path(sys.executable).with_name("aigis"))


def aigis(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AIGIS, *args], env=env, capture_output=True, text=True, timeout=240, check=False
    )


def status(env: dict[str, str] | None = None) -> dict[str, dict[str, object]]:
    done = aigis("dev", "status", "--json", env=env)
    return {s["name"]: s for s in json.loads(done.stdout)}


def _free_port_pair() -> int:
    """A port whose successor is free too (Kafka's broker and controller listeners)."""
    for _ in range(100):
        port = random.randint(41000, 59000)
        if not any(procs.port_open("127.0.0.1", p) for p in (port, port + 1)):
            return port
    raise RuntimeError("no free port pair found")


@pytest.fixture
def scratch_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a second stack: own state dir, free ports; torn down afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIGIS_")}
    env["AIGIS_CACHE_DIR"] = str(Settings().cache_dir)  # reuse the jars the suite's stack uses
    env["AIGIS_STATE_DIR"] = str(tmp_path / "state")
    env["AIGIS_KAFKA__BOOTSTRAP_SERVERS"] = f"127.0.0.1:{_free_port_pair()}"
    env["AIGIS_REDIS__URL"] = f"redis://127.0.0.1:{_free_port_pair()}/0"
    env["AIGIS_DEV__START_TIMEOUT_S"] = "90"
    yield env
    aigis("dev", "down", env=env)


def test_status_reports_versions_and_health(kafka_ready: Settings) -> None:
    services = status()
    assert services["kafka"]["healthy"] is True
    assert str(services["kafka"]["version"]).startswith(kafka_dist.kafka_version())
    assert services["redis"]["healthy"] is True
    assert str(services["redis"]["version"]).split(".")[0].isdigit()
    table = aigis("dev", "status")
    assert table.returncode == 0
    assert "kafka" in table.stdout
    assert "redis" in table.stdout


def test_up_twice_is_idempotent(kafka_ready: Settings) -> None:
    before = status()
    done = aigis("dev", "up")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("already running") == 2
    after = status()
    assert {n: s["pid"] for n, s in after.items()} == {n: s["pid"] for n, s in before.items()}


@pytest.mark.slow
def test_lifecycle_on_other_ports_leaves_no_process(scratch_env: dict[str, str]) -> None:
    first = aigis("dev", "up", env=scratch_env)
    assert first.returncode == 0, first.stderr
    assert "started" in first.stdout
    services = status(scratch_env)
    assert all(s["state"] == "running" for s in services.values()), services
    pids = [int(str(s["pid"])) for s in services.values()]

    again = aigis("dev", "up", env=scratch_env)
    assert again.returncode == 0
    assert again.stdout.count("already running") == 2

    down = aigis("dev", "down", env=scratch_env)
    assert down.returncode == 0, down.stderr
    assert not any(procs.alive(pid) for pid in pids)
    stopped = status(scratch_env)
    assert all(s["state"] == "stopped" for s in stopped.values())
    assert aigis("dev", "status", env=scratch_env).returncode == 1
    assert "not running" in aigis("dev", "down", env=scratch_env).stdout


def test_up_refuses_a_port_held_by_a_stranger(scratch_env: dict[str, str]) -> None:
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        port = stranger.getsockname()[1]
        env = {**scratch_env, "AIGIS_REDIS__URL": f"redis://127.0.0.1:{port}/0"}
        done = aigis("dev", "up", env=env)
    assert done.returncode == 1
    assert f"port {port} on 127.0.0.1 (the Redis port) is taken by a process" in done.stderr
    assert status(env)["redis"]["state"] == "stopped"


def test_broker_that_cannot_start_says_why(scratch_env: dict[str, str]) -> None:
    env = {**scratch_env, "AIGIS_DEV__KAFKA_HEAP": "lots"}
    done = aigis("dev", "up", env=env)
    assert done.returncode == 1
    assert "exited while starting" in done.stderr
    assert "server.log" in done.stderr
    assert "Invalid maximum heap size" in done.stderr
    assert status(env)["kafka"]["state"] == "stopped"


def test_topics_creates_what_is_missing_on_the_configured_broker(
    kafka_ready: Settings, make_group_id: Callable[[], str]
) -> None:
    prefix = make_group_id().replace("test-group", "test.topics")
    names = {f: f"{prefix}.{f}" for f in type(kafka_ready.topics).model_fields}
    env = {**os.environ, **{f"AIGIS_TOPICS__{f.upper()}": n for f, n in names.items()}}
    try:
        first = aigis("dev", "topics", env=env)
        assert first.returncode == 0, first.stderr
        assert all(name in first.stdout for name in names.values())
        second = aigis("dev", "topics", env=env)
        assert "all 6 present" in second.stdout
        assert "created" not in second.stdout
    finally:
        kafka.delete_topics(kafka_ready, names.values())


def test_topics_without_a_broker_fails_with_the_address() -> None:
    env = {**os.environ, "AIGIS_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{_free_port_pair()}"}
    done = aigis("dev", "topics", "--wait", "0", env=env)
    assert done.returncode == 1
    assert "could not create an admin client" in done.stderr

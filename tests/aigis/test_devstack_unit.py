"""The pieces of `aigis dev` that need no running service."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from aigis.devstack import DevStackError, kafka_dist
from aigis.devstack.kafka_broker import KafkaBroker, _cluster_id
from aigis.devstack.redis_server import RedisServer
from aigis.devstack.service import loopback_endpoint
from schemas.settings import DevSettings, KafkaSettings, RedisSettings, Settings
from serving import procs

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:19092", ("127.0.0.1", 19092)),
        ("localhost:1", ("localhost", 1)),
        ("[::1]:6379", ("::1", 6379)),
    ],
)
def test_loopback_endpoint(address: str, expected: tuple[str, int]) -> None:
    assert loopback_endpoint(address, "Kafka", "X") == expected


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("10.0.0.5:9092", "not this machine"),
        ("kafka.prod:9092", "not this machine"),
        ("127.0.0.1", "not host:port"),
        (":9092", "not host:port"),
    ],
)
def test_loopback_endpoint_rejects(address: str, message: str) -> None:
    with pytest.raises(DevStackError, match=message):
        loopback_endpoint(address, "Kafka", "AIGIS_KAFKA__BOOTSTRAP_SERVERS")


def test_one_broker_only(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path, kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1,127.0.0.1:2")
    )
    with pytest.raises(DevStackError, match="lists 2 brokers"):
        KafkaBroker(settings)


def test_redis_url_must_be_plain_redis(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, redis=RedisSettings(url="rediss://127.0.0.1:6380/0"))
    with pytest.raises(DevStackError, match="plain redis://"):
        RedisServer(settings)


def test_broker_config_derives_from_settings(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path,
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:39092", partitions=3),
    )
    text = KafkaBroker(settings).render_config()
    assert "listeners=PLAINTEXT://127.0.0.1:39092,CONTROLLER://127.0.0.1:39093" in text
    assert "controller.quorum.voters=1@127.0.0.1:39093" in text
    assert f"log.dirs={tmp_path / 'kafka' / 'data'}" in text
    assert "num.partitions=3" in text
    assert "transaction.state.log.min.isr=1" in text
    assert "group.initial.rebalance.delay.ms=0" in text
    assert "$" not in text

    moved = settings.model_copy(update={"dev": DevSettings(kafka_controller_port=40000)})
    assert "CONTROLLER://127.0.0.1:40000" in KafkaBroker(moved).render_config()


def test_kafka_version_comes_from_the_pom() -> None:
    assert re.fullmatch(r"4\.\d+\.\d+", kafka_dist.kafka_version())


def test_jars_live_in_the_cache_dir(tmp_path: Path) -> None:
    libs = kafka_dist.libs_dir(Settings(cache_dir=tmp_path))
    assert libs == tmp_path / f"kafka-{kafka_dist.kafka_version()}" / "libs"


def test_cluster_ids_look_like_kafka_uuids() -> None:
    ids = {_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", i) for i in ids)


def test_owned_pid_checks_the_command_line(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    assert procs.owned_pid(pid_file, "anything") is None
    procs.write_pid(pid_file, os.getpid())
    assert procs.read_pid(pid_file) == os.getpid()
    assert procs.owned_pid(pid_file, "pytest") == os.getpid()
    # A recycled pid that now belongs to another program is not ours.
    assert procs.owned_pid(pid_file, "no-such-marker-in-this-command-line") is None
    pid_file.write_text("garbage\n")
    assert procs.read_pid(pid_file) is None


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print(1, flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert child.stdout is not None
    child.stdout.readline()  # the handler is installed
    assert procs.stop(child.pid, timeout_s=0.3) is True
    assert not procs.alive(child.pid)


def test_stop_a_cooperative_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert procs.stop(child.pid, timeout_s=5) is False
    assert not procs.alive(child.pid)


def test_port_open() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert procs.port_open("127.0.0.1", port)
    assert not procs.port_open("127.0.0.1", port)


def test_tail(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert procs.tail(log, 2) == "line 98\nline 99"
    assert "does not exist" in procs.tail(tmp_path / "missing.log")

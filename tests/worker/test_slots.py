"""Process slots: claimed with lock files, unique per live process, reused once released; the
metrics port and transactional id follow the slot, and a port in use is a clear error."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from schemas.settings import Settings, WorkerSettings
from worker.loop import stream_config
from worker.runtime.metrics import MetricsPortUnavailable, serve_metrics
from worker.runtime.slots import SlotUnavailable, claim_slot, lock_path, metrics_port

pytestmark = pytest.mark.unit

_HOLDER = """
import sys, time
from pathlib import Path
from worker.runtime.slots import claim_slot
with claim_slot(Path(sys.argv[1]), "g") as slot:
    print(slot, flush=True)
    time.sleep(60)
"""


def claim_and_release(directory: Path, group: str, **asked: int) -> int:
    with claim_slot(directory, group, **asked) as slot:
        return slot


def test_two_claims_on_one_host_get_different_slots(tmp_path: Path) -> None:
    with claim_slot(tmp_path, "g") as first, claim_slot(tmp_path, "g") as second:
        assert (first, second) == (0, 1)
        with claim_slot(tmp_path, "other-group") as other:
            assert other == 0  # slots are per consumer group


def test_a_released_slot_is_taken_again_first(tmp_path: Path) -> None:
    with ExitStack() as stack:
        zero = stack.enter_context(claim_slot(tmp_path, "g"))
        with claim_slot(tmp_path, "g") as one:
            assert (zero, one) == (0, 1)
        with claim_slot(tmp_path, "g") as again:
            assert again == 1
    with claim_slot(tmp_path, "g") as after_all:
        assert after_all == 0


def test_a_preferred_slot_is_taken_when_free_else_the_first_free(tmp_path: Path) -> None:
    with claim_slot(tmp_path, "g", preferred=3) as three:
        assert three == 3
        with claim_slot(tmp_path, "g", preferred=3) as taken:
            assert taken == 0


def test_a_fixed_slot_held_elsewhere_is_an_error_naming_the_holder(tmp_path: Path) -> None:
    with claim_slot(tmp_path, "g", fixed=2) as two:
        assert two == 2
        with pytest.raises(SlotUnavailable, match=rf"slot 2 .*\(pid {os.getpid()},"):
            claim_and_release(tmp_path, "g", fixed=2)
    assert claim_and_release(tmp_path, "g", fixed=2) == 2


def test_the_lock_is_released_when_its_holder_dies(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "0"
        with claim_slot(tmp_path, "g") as while_held:
            assert while_held == 1
        os.kill(holder.pid, signal.SIGKILL)  # no cleanup runs: the kernel drops the lock
        holder.wait(timeout=10)
        with claim_slot(tmp_path, "g") as after:
            assert after == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_an_unusable_slot_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SlotUnavailable, match="AIGIS_STATE_DIR"):
        claim_and_release(blocker / "worker-slots", "g")


@pytest.mark.parametrize("asked", [{"fixed": 1024}, {"preferred": -1}])
def test_slots_out_of_range_are_refused(tmp_path: Path, asked: dict[str, int]) -> None:
    with pytest.raises(SlotUnavailable, match="outside"):
        claim_and_release(tmp_path, "g", **asked)


def test_any_group_id_makes_a_plain_file_name(tmp_path: Path) -> None:
    path = lock_path(tmp_path, "../team a/group", 3)
    assert path.parent == tmp_path
    assert path.name == ".._team_a_group.3.lock"


def test_the_metrics_port_and_transactional_id_follow_the_slot() -> None:
    settings = Settings(
        worker=WorkerSettings(group_id="g", instance_id="host-a", metrics_port=9108)
    )
    for slot in (0, 3):
        config = stream_config(settings, slot)
        assert config.metrics_port == 9108 + slot
        assert config.transactional_id == f"g.host-a.{slot}"
    assert metrics_port(0, 5) == 0  # no endpoint stays no endpoint
    with pytest.raises(SlotUnavailable, match="METRICS_PORT"):
        metrics_port(65535, 1)


def test_a_metrics_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = int(holder.getsockname()[1])
        with pytest.raises(MetricsPortUnavailable, match=f"127.0.0.1:{port}"):
            serve_metrics(CollectorRegistry(), "127.0.0.1", port)

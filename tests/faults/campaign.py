"""The fault campaign: a few thousand events through real workers while faults combine.

Two or three worker processes (``python -m aigis.run --slot K``, as in production) share the
partitions of a fresh topic. While events are published, the plan of one seed
(:mod:`tests.faults.schedule`) SIGKILLs workers at random and restarts them, stops TorchServe
while batches are held, stops Redis, and restarts the broker. A worker that exits on its own is
restarted too, as Kubernetes would. Then every input record must have exactly one outcome, a
verdict or a dead letter, read with ``read_committed``, and the group's committed offsets must
have reached the end of every partition without ever moving backwards.

    python -m tests.faults.campaign --seed 7            # one seed, printed plan and result
    python -m tests.faults.campaign --seeds 20          # seeds 1..20 on one stack (make faults)

Exit status 0 when every seed held the invariant. Logs of each seed's workers stay in the work
directory it prints.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from kafka.errors import KafkaError
from kafka.structs import TopicPartition
from PIL import Image

from aigis.devstack import stack
from schemas import AigisError, ImageEvent, encode
from schemas.settings import Settings
from tests.faults.schedule import Plan, plan
from tests.faults.stack import PORT_OFFSET, FaultStack, isolate_environment
from tests.faults.verify import Outcome, check, committed_offsets, end_offsets


@dataclass
class Workers:
    """Worker processes by slot, their logs under ``logs``; restarts what is not running."""

    count: int
    logs: Path
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    killed: int = 0
    exits: list[str] = field(default_factory=list)
    """Exits that were not our SIGKILL: ``slot K: status S``."""

    def start(self, slot: int) -> None:
        log = (self.logs / f"worker-{slot}.log").open("ab")
        self.procs[slot] = subprocess.Popen(
            [sys.executable, "-m", "aigis.run", "--slot", str(slot)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def kill_one(self, rng: random.Random) -> None:
        alive = [s for s, p in self.procs.items() if p.poll() is None]
        if alive:
            proc = self.procs.pop(rng.choice(alive))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            self.killed += 1

    def keep_running(self) -> None:
        """Start every slot that has no live process (a killed one after its pause)."""
        for slot in range(self.count):
            proc = self.procs.get(slot)
            if proc is not None and proc.poll() is not None:
                self.exits.append(f"slot {slot}: status {proc.returncode}")
                proc = None
            if proc is None:
                self.start(slot)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for slot, proc in self.procs.items():
            try:
                status = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                status = proc.wait()
                self.exits.append(f"slot {slot}: did not stop within 60 s of SIGTERM")
            if status not in (0, -signal.SIGTERM):
                self.exits.append(f"slot {slot}: status {status} after SIGTERM")


def seed_environment(seed: int) -> Settings:
    """Fresh topics, group and cache prefix for ``seed``, in this process's environment."""
    for name in ("images", "verdicts", "review", "review_decisions", "pseudo_labels", "dlq"):
        os.environ[f"AIGIS_TOPICS__{name.upper()}"] = f"faults-{seed}.{name}"
    os.environ["AIGIS_WORKER__GROUP_ID"] = f"faults-{seed}"
    os.environ["AIGIS_REDIS__KEY_PREFIX"] = f"faults-{seed}:verdict"
    return Settings()


def inputs(seed: int, count: int) -> list[tuple[str, bytes]]:
    """``(key, value)`` records: mostly distinct images, some repeated (cache hits), some that
    are not images (dead letters), some that are not events at all (dead letters)."""
    rng = np.random.default_rng(seed)
    records: list[tuple[str, bytes]] = []
    images: list[bytes] = []
    for i in range(count):
        roll = rng.random()
        key = f"s{seed}-{i}"
        if roll < 0.01:
            records.append((key, b'{"version": 2, "event_id": ' + str(i).encode()))
            continue
        if roll < 0.02:
            event = ImageEvent.inline(key, b"this is not an image " + key.encode())
        elif roll < 0.12 and images:
            event = ImageEvent.inline(key, images[int(rng.integers(len(images)))])
        else:
            pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="PNG")
            images.append(buffer.getvalue())
            event = ImageEvent.inline(key, images[-1], caption=f"image {i}")
        records.append((key, encode(event)))
    return records


def publish_over(settings: Settings, records: list[tuple[str, bytes]], seconds: float) -> None:
    """Publish ``records`` evenly over ``seconds``, waiting for each chunk's acknowledgements."""
    from worker import kafka

    producer = kafka.producer(settings)
    chunks = max(1, int(seconds * 2))
    size = -(-len(records) // chunks)
    started = time.monotonic()
    try:
        for n, first in enumerate(range(0, len(records), size)):
            for key, value in records[first : first + size]:
                producer.send(settings.topics.images, value=value, key=key.encode())
            producer.flush(timeout=60)
            time.sleep(max(0.0, started + (n + 1) * seconds / chunks - time.monotonic()))
    finally:
        producer.close(timeout=5)


class CommitWatch(threading.Thread):
    """Reads the group's committed offsets every second; remembers any that moved backwards."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.highest: dict[TopicPartition, int] = {}
        self.backwards: list[str] = []
        self.unreadable = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            try:
                offsets = committed_offsets(self.settings)
            except (KafkaError, AigisError):  # the broker restarting: read again next second
                self.unreadable += 1
                offsets = {}
            for tp, offset in offsets.items():
                if offset < self.highest.get(tp, 0):
                    self.backwards.append(f"{tp.partition}: {self.highest[tp]} -> {offset}")
                self.highest[tp] = max(offset, self.highest.get(tp, 0))


def run_seed(faults: FaultStack, seed: int, events: int, workdir: Path, window_s: float) -> bool:
    """One seed of the campaign; prints its plan and result, says whether it held."""
    the_plan: Plan = plan(seed, events=events, window_s=window_s)
    print(the_plan.describe(), flush=True)
    settings = seed_environment(seed)
    stack.create_topics(settings)
    records = inputs(seed, events)
    logs = workdir / f"seed-{seed}"
    logs.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    workers = Workers(the_plan.workers, logs)
    watch = CommitWatch(settings)
    publisher = threading.Thread(
        target=publish_over, args=(settings, records, the_plan.publish_s), daemon=True
    )
    started = time.monotonic()
    try:
        workers.keep_running()
        publisher.start()
        watch.start()
        restart_after = 0.0
        for fault in the_plan.faults:
            while time.monotonic() - started < fault.at_s:
                time.sleep(0.1)
                if time.monotonic() >= restart_after:
                    workers.keep_running()
            print(f"  {time.monotonic() - started:6.1f} s  {fault.action}", flush=True)
            if fault.action == "kill":
                workers.kill_one(rng)
                restart_after = time.monotonic() + rng.uniform(0.3, 3.0)
            else:
                getattr(faults, fault.action)()
        publisher.join(timeout=120)
        workers.keep_running()
        finished = wait_until_committed(settings, workers, timeout_s=300)
    finally:
        workers.stop()
        watch.done.set()
    outcome: Outcome = check(settings, [key for key, _ in records])
    print(
        f"seed {seed}: {outcome.summary()}; {workers.killed} kills, "
        f"{time.monotonic() - started:.0f} s; logs in {logs}",
        flush=True,
    )
    problems = outcome.problems()
    if not finished:
        problems.append("the group's committed offsets did not reach the end within 300 s")
    if watch.backwards:
        problems.append(f"committed offsets moved backwards: {watch.backwards[:5]}")
    for problem in problems + [f"worker exit: {e}" for e in workers.exits]:
        print(f"  {problem}", flush=True)
    return not problems


def wait_until_committed(settings: Settings, workers: Workers, timeout_s: float) -> bool:
    """Wait until the group's committed offsets reach the end of the input topic."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        workers.keep_running()
        if _caught_up(settings):
            return True
        time.sleep(1.0)
    return False


def _caught_up(settings: Settings) -> bool:
    try:
        ends = end_offsets(settings, settings.topics.images)
        committed = committed_offsets(settings)
    except (KafkaError, AigisError):  # the broker still starting, a transaction still open
        return False
    return all(committed.get(tp, 0) >= end for tp, end in ends.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.campaign", description=__doc__)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--seed", type=int, help="run this one seed")
    which.add_argument("--seeds", type=int, help="run seeds 1..N")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--window", type=float, default=60.0, help="seconds of faults per seed")
    parser.add_argument("--port-offset", type=int, default=PORT_OFFSET)
    parser.add_argument("--workdir", type=Path, help="default: a new temporary directory")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="aigis-faults-"))
    isolate_environment(workdir / "state", args.port_offset)
    seeds = [args.seed] if args.seed is not None else list(range(1, args.seeds + 1))
    faults = FaultStack(workdir / "state")
    print(f"fault campaign: seeds {seeds}, work directory {workdir}", flush=True)
    failed = []
    try:
        faults.up()
        for seed in seeds:
            if not run_seed(faults, seed, args.events, workdir, args.window):
                failed.append(seed)
            faults.serving_start()
            faults.cache_start()
    finally:
        faults.down()
    print(f"{len(seeds) - len(failed)} of {len(seeds)} seeds held; failed: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

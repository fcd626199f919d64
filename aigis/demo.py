"""The end-to-end tour behind ``aigis demo``.

Each step runs the same ``aigis`` command a user would type (train, export, serve, register,
worker, sink, retrain) as a child process, so the demo shows the real product, not a shortcut.
Only publishing and reading verdicts happen in this process, because the summary needs the known
labels of what was published.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from kafka import TopicPartition
from rich.console import Console
from rich.table import Table

from aigis import devstack
from aigis.demo_evidence import (
    add_console_login,
    console_line,
    evidence_events,
    evidence_table,
    trust_anchor,
)
from schemas import ImageEvent, PseudoLabel, ReviewItem, Verdict, decode, encode
from schemas.errors import AigisError
from schemas.labels import GENERATORS
from schemas.settings import Settings
from worker.kafka import consumer, producer

if TYPE_CHECKING:
    from aigis.samples import Credential

console = Console()


class DemoError(AigisError):
    """A step of the demo failed; the message names the step and where its log is."""


@dataclass
class Published:
    """What the demo knows about one event it published."""

    label_a: int
    label_b: int


@dataclass
class Round:
    """Verdicts of one publishing round, with timing."""

    verdicts: dict[str, Verdict] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0

    @property
    def events_per_s(self) -> float:
        return len(self.verdicts) / max(self.finished - self.started, 1e-9)

    def latency_ms(self, quantile: float) -> float:
        values = sorted(
            v.timings.end_to_end_ms for v in self.verdicts.values() if v.timings.end_to_end_ms
        )
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(quantile * len(values)))]


class Demo:
    """Runs the tour step by step; ``close`` stops everything it started (unless kept)."""

    def __init__(self, settings: Settings, *, keep: bool, events: int, reuse_model: bool) -> None:
        self.settings = settings
        self.keep = keep
        self.events = events
        self.reuse_model = reuse_model
        self.root = settings.state_dir / "demo"
        self.logs = self.root / "logs"
        self.trust_anchors = self.root / "trust-anchors.pem"
        self.credential: Credential | None = None
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.started_serving = False
        self.console_password = secrets.token_urlsafe(12)
        self.run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")

    # -- steps ----------------------------------------------------------------------------

    def run(self) -> None:
        t0 = time.monotonic()
        # Each tour starts with its own empty model store, registry and label store, so that a
        # second run never meets the versions and labels of the first.
        for leftover in ("model-store", "registry", "labels", "logs", "review"):
            shutil.rmtree(self.root / leftover, ignore_errors=True)
        self.trust_anchors.unlink(missing_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.step("1/9 Kafka and Redis")
        devstack.up(self.settings)
        self.step("2/9 train the tiny fused detector on the smoke set")
        model = self.train()
        self.step("3/9 export the model and serve it on TorchServe")
        self.serve(model)
        self.step("4/9 start a worker, the label-store sink and the review console")
        # The worker trusts the demo's own C2PA issuer: manifests it signs decide (step 7).
        self.credential = trust_anchor(self.trust_anchors)
        self.spawn("worker", ["worker"])
        self.spawn("sink", ["sink"])
        self.start_console()
        self.step(f"5/9 publish the smoke test split ({self.events} images) and watch verdicts")
        known, first = self.publish_round("r1")
        self.summary(known, first)
        self.step("6/9 publish the same images again: answered from the Redis cache")
        _, replay = self.publish_round("r2", show=False)
        self.replay_summary(first, replay)
        self.step("7/9 images with provenance, generator metadata, a watermark, and a copy")
        self.publish_evidence()
        self.step("8/9 new traffic: the smoke validation split, outside the gold hold-out")
        _, fresh = self.publish_round("r3", split="validation", show=False)
        console.print(f"{len(fresh.verdicts)} more verdicts at {fresh.events_per_s:.1f} events/s")
        self.routing_summary(first)
        self.step("9/9 one retraining cycle behind the promotion gate")
        self.retrain()
        console.print(f"\n[bold green]demo finished in {time.monotonic() - t0:.0f} s[/]")

    def train(self) -> Path:
        model = self.root / "model"
        if self.reuse_model and (model / "config.json").is_file():
            console.print(f"reusing the model trained earlier in {model}")
            return model
        self.aigis(
            [
                "train",
                *("--arch", "fused", "--preset", "tiny", "--data", "smoke"),
                *("--output", str(model), "--version", "1"),
            ],
            live=True,
        )
        return model

    def serve(self, model: Path) -> None:
        store = self.root / "model-store"
        self.aigis(
            [
                *("export", "--model", str(model), "--output", str(store)),
                *("--version", "1", "--watermark", "--force"),
            ]
        )
        self.aigis(["serve", "start", "--model-store", str(store)], live=True)
        self.started_serving = True
        archive = next(store.glob("*.mar"))
        self.aigis(["model", "register", str(archive)], live=True)

    def publish_round(
        self, tag: str, *, split: str = "test", show: bool = True
    ) -> tuple[dict[str, Published], Round]:
        """Publish a split of the smoke set and collect one verdict per event."""
        from training.data import load_split

        samples = list(load_split("smoke", split))[: self.events]
        known: dict[str, Published] = {}
        result = Round()
        with (
            contextlib.closing(self._verdict_reader()) as reader,
            contextlib.closing(producer(self.settings)) as out,
        ):
            result.started = time.monotonic()
            for i, sample in enumerate(samples):
                event_id = f"demo-{self.run_id}-{tag}-{i:04d}"
                event = ImageEvent.inline(
                    event_id,
                    sample.image,
                    caption=sample.caption,
                    source="demo",
                    produced_at=datetime.now(UTC),
                )
                out.send(self.settings.topics.images, key=event_id.encode(), value=encode(event))
                known[event_id] = Published(sample.label_a, sample.label_b)
            out.flush()
            self._collect(reader, known, result, show=show)
        return known, result

    def publish_evidence(self) -> None:
        """Images that carry each kind of evidence, and a JPEG copy of the first image of step
        5 (with its caption: the cache's namespace includes it), and how each was decided."""
        assert self.credential is not None, "step 4 made it"
        names, events = evidence_events(self.credential, f"demo-{self.run_id}-evidence")
        with (
            contextlib.closing(self._verdict_reader()) as reader,
            contextlib.closing(producer(self.settings)) as out,
        ):
            for event in events:
                out.send(
                    self.settings.topics.images, key=event.event_id.encode(), value=encode(event)
                )
            out.flush()
            result = Round()
            self._collect(reader, dict.fromkeys(names, Published(1, 0)), result, show=False)
        console.print(evidence_table(names, result.verdicts))

    def _verdict_reader(self):  # type: ignore[no-untyped-def]
        """A consumer positioned at the current end of the verdicts topic (no group)."""
        reader = consumer(self.settings, group_id=f"demo-{uuid.uuid4().hex[:8]}")
        parts = reader.partitions_for_topic(self.settings.topics.verdicts) or set()
        assigned = [TopicPartition(self.settings.topics.verdicts, p) for p in parts]
        reader.assign(assigned)
        reader.seek_to_end(*assigned)
        for tp in assigned:
            reader.position(tp)
        return reader

    def _collect(self, reader, known: dict[str, Published], result: Round, *, show: bool) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 300
        while len(result.verdicts) < len(known):
            if time.monotonic() > deadline:
                raise DemoError(
                    f"only {len(result.verdicts)} of {len(known)} verdicts arrived in 300 s; "
                    f"see the worker's log {self.logs / 'worker.log'}"
                )
            for records in reader.poll(timeout_ms=500).values():
                for record in records:
                    verdict = decode(Verdict, record.value)
                    if verdict.event_id not in known or verdict.event_id in result.verdicts:
                        continue
                    result.verdicts[verdict.event_id] = verdict
                    result.finished = time.monotonic()
                    if show and (len(result.verdicts) <= 10 or len(result.verdicts) % 50 == 0):
                        truth = known[verdict.event_id]
                        console.print(
                            f"  {len(result.verdicts):4d} {verdict.event_id.split('-', 2)[2]} "
                            f"p_ai={verdict.p_ai:.3f} {verdict.decision:<13} "
                            f"{verdict.generator:<12} truth={'ai' if truth.label_a else 'human'}"
                        )

    def summary(self, known: dict[str, Published], first: Round) -> None:
        from training.metrics import task_a

        ids = sorted(first.verdicts)
        metrics = task_a([known[i].label_a for i in ids], [first.verdicts[i].p_ai for i in ids])
        names = {v.generator for v in first.verdicts.values()}
        correct_b = sum(
            1 for i in ids if first.verdicts[i].generator == GENERATORS[known[i].label_b]
        )
        table = Table(title="first pass over the smoke test split")
        table.add_column("measure")
        table.add_column("value", justify="right")
        table.add_row("events", str(len(ids)))
        table.add_row("Task A accuracy", f"{metrics['accuracy']:.3f}")
        table.add_row("Task A F1", f"{metrics['f1']:.3f}")
        table.add_row("generator named correctly", f"{correct_b / max(len(ids), 1):.3f}")
        table.add_row("events/s (publish to last verdict)", f"{first.events_per_s:.1f}")
        table.add_row("end-to-end latency p50 (ms)", f"{first.latency_ms(0.50):.0f}")
        table.add_row("end-to-end latency p99 (ms)", f"{first.latency_ms(0.99):.0f}")
        table.add_row("generators named", ", ".join(sorted(names)))
        console.print(table)

    def replay_summary(self, first: Round, replay: Round) -> None:
        hits = sum(1 for v in replay.verdicts.values() if v.cached)
        console.print(
            f"replay: {hits} of {len(replay.verdicts)} verdicts came from the cache; "
            f"{replay.events_per_s:.1f} events/s against {first.events_per_s:.1f} on the first "
            f"pass (latency p50 {replay.latency_ms(0.5):.0f} ms)"
        )

    def routing_summary(self, first: Round) -> None:
        review = self._count(self.settings.topics.review, ReviewItem)
        pseudo = self._count(self.settings.topics.pseudo_labels, PseudoLabel)
        decisions = dict(sorted(Counter(str(v.decision) for v in first.verdicts.values()).items()))
        console.print(f"decisions on the first pass: {decisions}")
        console.print(
            f"this run put {review} items on {self.settings.topics.review} and {pseudo} "
            f"pseudo-labels on {self.settings.topics.pseudo_labels} (all three passes)"
        )
        console.print("waiting for the sink to write the pseudo-labels to the label store ...")
        time.sleep(self.settings.store.flush_interval_s + 2)

    def _count(self, topic: str, model: type[ReviewItem] | type[PseudoLabel]) -> int:
        reader = consumer(self.settings, group_id=f"demo-count-{uuid.uuid4().hex[:8]}")
        with contextlib.closing(reader):
            parts = [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or ()]
            reader.assign(parts)
            reader.seek_to_beginning(*parts)
            ends = reader.end_offsets(parts)
            count = 0
            prefix = f"demo-{self.run_id}-"
            while any(reader.position(tp) < ends[tp] for tp in parts):
                for records in reader.poll(timeout_ms=500).values():
                    for record in records:
                        message = decode(model, record.value)
                        event_id = (
                            message.verdict.event_id
                            if isinstance(message, ReviewItem)
                            else message.event_id
                        )
                        count += event_id.startswith(prefix)
            return count

    def retrain(self) -> None:
        self.aigis(
            ["retrain", "--data", "smoke", "--epochs", "1", "--force"],
            live=True,
        )
        self.aigis(["model", "list"], live=True)

    # -- plumbing -------------------------------------------------------------------------

    def step(self, title: str) -> None:
        console.rule(f"[bold]{title}")

    def aigis(self, args: Sequence[str], *, live: bool = False) -> None:
        """Run ``aigis ARGS``; its output goes to the terminal (live) or to a log file."""
        log = self.logs / f"{args[0]}.log"
        command = [sys.executable, "-m", "aigis.cli", *args]
        console.print(f"[dim]$ aigis {' '.join(args)}[/]")
        if live:
            done = subprocess.run(command, env=self._env(), check=False)
        else:
            with log.open("ab") as out:
                done = subprocess.run(command, env=self._env(), stdout=out, stderr=out, check=False)
        if done.returncode != 0:
            where = "" if live else f"; its log is {log}"
            raise DemoError(f"`aigis {' '.join(args)}` exited {done.returncode}{where}")

    def start_console(self) -> None:
        """The review console, with a login of this tour; the items that need review land there."""
        add_console_login(self._env()["AIGIS_REVIEW__DATABASE_URL"], self.console_password)
        self.spawn("console", ["review", "serve"])

    def console_line(self) -> str:
        exited = any(name == "console" and c.poll() is not None for name, c in self.children)
        return console_line(self.settings, self.logs / "console.log", self.console_password, exited)

    def spawn(self, name: str, args: Sequence[str]) -> None:
        with (self.logs / f"{name}.log").open("ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "aigis.cli", *args],
                env=self._env(),
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.children.append((name, child))
        console.print(f"started `aigis {' '.join(args)}` (pid {child.pid}, log {log.name})")

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("AIGIS_LOG_FORMAT", "json")
        # The demo wants the sink to write its shards within seconds, not at production pace.
        env.setdefault("AIGIS_STORE__FLUSH_INTERVAL_S", "2")
        env["AIGIS_STORE__URL"] = str(self.root / "labels")
        env["AIGIS_RETRAIN__REGISTRY_DIR"] = str(self.root / "registry")
        env["AIGIS_REVIEW__DATABASE_URL"] = f"sqlite:///{self.root / 'review' / 'console.db'}"
        # The demo publishes images inline: its store must keep their bytes (an opt-in) for the
        # retraining step to have pseudo-labels to train on.
        env["AIGIS_STORE__KEEP_IMAGE_BYTES"] = "true"
        if self.trust_anchors.is_file():
            env["AIGIS_EVIDENCE__TRUST_ANCHORS_FILE"] = str(self.trust_anchors)
        return env

    def close(self) -> None:
        if self.keep:
            console.print(
                f"\n{self.console_line()}\n"
                "left running (--keep): the worker, the sink, the review console "
                f"(pids {', '.join(str(c.pid) for _, c in self.children)}), TorchServe, Kafka "
                "and Redis. Stop them with:\n"
                f"  kill {' '.join(str(c.pid) for _, c in self.children)}; "
                "aigis serve stop; aigis dev down"
            )
            return
        for name, child in reversed(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    console.print(f"{name} did not stop in 60 s; killing it")
                    child.kill()
                    child.wait()
        if self.started_serving:
            with contextlib.suppress(DemoError):
                self.aigis(["serve", "stop"])
        devstack.down(self.settings)
        console.print("stopped everything the demo started")


__all__ = ["Demo", "DemoError"]

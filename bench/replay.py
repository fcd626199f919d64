"""The stream side's own cost: a cache-hit replay by today's code and by this code at several
micro-batch sizes, and against the first pass on the base model, in one run.

Needs Kafka and Redis (``aigis dev up``); starts its own TorchServe, with the tiny model and then
with the base model.

    .venv/bin/python -m bench.replay [--events 1200] [--batch-sizes 32,64,128,256]
                                     [--baseline 9d45e37] [--base-events 240] [--json PATH]

(as a module from the repository root). A first pass scores N images that are not
near-duplicates of one another (:func:`bench.images.distinct_images`), filling the cache; each
replay publishes the same images again as new events to fresh topics and runs one worker
process (exactly-once) over that backlog. The first replay runs the worker of the
``--baseline`` git ref (by default the worker before its cache path was tuned, at its batch
size 32), the others this code with
``AIGIS_WORKER__BATCH_SIZE`` set to each size. A batch is one Kafka transaction: its records,
its input offsets and a commit marker on every partition it wrote, so records, requests and
markers per event fall as batches grow. For each: events/s, CPU milliseconds per event of the
worker process and of the Kafka broker's JVM (``utime + stime`` from ``/proc/<pid>/stat``, read
at the first and at the last verdict), cache hits, and offsets per event on each output topic.

Last (``--base-events``, 0 to skip), :mod:`bench.replay_base`: a first pass on the base fused
model as ``aigis export`` packages it for a CPU, and the cache-hit replay of its images at
batch 32; their ratio is the issue's replay goal on the base model.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aigis.devstack.kafka_broker import KafkaBroker
from bench.images import distinct_images
from bench.replay_base import BATCH_SIZE, base_replay
from bench.worker import _CREATED, bench_settings, export_store, fresh, replay_of, run_worker_phase
from schemas.settings import Settings, WorkerSettings
from serving.torchserve.server import running_torchserve
from worker import kafka
from worker.tail import partitions

BASELINE = "9d45e37"
"""The worker before its cache path was tuned (default ``--baseline``): a fixed commit, so that
the comparison stays one with that code once this code is on main."""

NEW_SETTINGS = ("AIGIS_KAFKA__STREAM_", "AIGIS_SERVING__REQUEST_BODY")
"""Settings the baseline's code does not know (it refuses them): left out of its environment."""


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    sizes = [int(size) for size in args.batch_sizes.split(",") if size]
    base = bench_settings()
    images = distinct_images(args.events)
    broker = KafkaBroker(base).pid()
    load = os.getloadavg()[0]
    print(f"# cache-hit replay: {args.events} events, load average {load:.1f}\n", flush=True)
    results: dict[str, Any] = {"events": args.events, "load_average_at_start": load}
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_torchserve(base, export_store(Path(tmp))) as ts,
    ):
        first = fresh(base, "first")
        results["first_pass"] = run_worker_phase(first, images, "first", ts, broker)
        results["first_pass"]["records_per_event"] = records_per_event(first, len(images))
        _print("first pass", results["first_pass"])
        phases: list[tuple[str, int, Path | None]] = []
        baseline = checkout(args.baseline, Path(tmp) / "baseline") if args.baseline else None
        if baseline is not None:
            results["baseline"] = {"ref": args.baseline, "commit": baseline[1]}
            phases.append((f"today's code ({args.baseline})", BATCH_SIZE, baseline[0]))
        phases += [("this code", size, None) for size in sizes]
        results["replays"] = []
        for i, (code, size, root) in enumerate(phases):
            replay = replay_of(first, f"replay{i}", batch_size=size)
            process: dict[str, Any] = {"code": root, "unset": NEW_SETTINGS} if root else {}
            row = run_worker_phase(replay, images, f"replay{i}", ts, broker, **process)
            default = root is None and size == WorkerSettings.model_fields["batch_size"].default
            row.update(code=code, batch_size=size, default=default)
            row["records_per_event"] = records_per_event(replay, len(images))
            results["replays"].append(row)
            _print(f"{code}, batch {size}", row)
    if args.base_events:
        print(f"\n# the base model: {args.base_events} events, exported for a CPU\n", flush=True)
        results["base_model"] = model = base_replay(base, broker, args.base_events)
        _print(f"base first pass ({model['backend']})", model["first_pass"])
        _print("base replay, batch 32", model["replay"])
        print(f"  replay against the first pass on the base model: {model['ratio']:.1f}x")
    kafka.delete_topics(base, _CREATED)
    results["load_average_at_end"] = os.getloadavg()[0]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def checkout(ref: str, root: Path) -> tuple[Path, str] | None:
    """The files of ``ref`` of this repository under ``root`` (``git archive``, no worktree),
    and its commit; None, said on stdout, when git cannot give them."""
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        root.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", commit], cwd=repo, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"  no baseline: git cannot give {ref!r} ({exc}); this code's rows only")
        return None
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    return root, commit


def records_per_event(settings: Settings, events: int) -> dict[str, float]:
    """Offsets the phase used on each output topic, per event: its records and, under
    exactly-once, the commit marker each transaction wrote on each partition it touched."""
    consumer = kafka.consumer(settings, group_id=None)
    try:
        out = {}
        for name in ("verdicts", "review", "pseudo_labels", "dlq"):
            topic = getattr(settings.topics, name)
            ends = consumer.end_offsets(partitions(consumer, topic))
            out[name] = sum(ends.values()) / events
        return out
    finally:
        consumer.close(autocommit=False)


def _print(name: str, row: dict[str, Any]) -> None:
    """One phase's figures on one line."""
    cpu = row["cpu_ms_per_event"]
    offsets = ", ".join(f"{t} {n:.2f}" for t, n in row.get("records_per_event", {}).items())
    print(
        f"  {name:<30} {row['events_per_s']:8.1f} events/s   CPU ms/event: worker "
        f"{cpu['worker']:.2f}, broker {cpu['kafka']:.2f}, together "
        f"{cpu['worker'] + cpu['kafka']:.2f}   mean batch {row['mean_batch_size']:.1f}, "
        f"cache hits {row['cache_hits']:.0f} of {row['cache_hits'] + row['cache_misses']:.0f}, "
        f"offsets per event: {offsets}",
        flush=True,
    )


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=1200, help="unique images (default 1200)")
    parser.add_argument(
        "--batch-sizes",
        default="32,64,128,256",
        help="worker batch sizes this code runs at (default 32,64,128,256)",
    )
    parser.add_argument(
        "--baseline",
        default=BASELINE,
        help=f"git ref of the code to compare with, replayed first at batch 32 ('' for none; "
        f"default {BASELINE}, the worker before its cache path was tuned)",
    )
    parser.add_argument(
        "--base-events",
        type=int,
        default=240,
        help="images of the first pass on the base model (default 240; 0 skips that phase)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()

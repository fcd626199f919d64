"""The stream side's own cost: a cache-hit replay at several micro-batch sizes, in one run.

Needs Kafka and Redis (``aigis dev up``); starts its own TorchServe with the tiny model.

    .venv/bin/python -m bench.replay [--events 1200] [--batch-sizes 32,128,256] [--json PATH]

(as a module from the repository root). A first pass scores N unique images, filling the cache;
each replay publishes the same images again as new events to fresh topics and runs one worker
process (exactly-once) over that backlog with ``AIGIS_WORKER__BATCH_SIZE`` set to one of the
sizes. A batch is one Kafka transaction: its records, its input offsets and a commit marker on
every partition it wrote, so records, requests and markers per event fall as batches grow. For
each: events/s, and CPU milliseconds per event of the worker process and of the Kafka broker's
JVM (``utime + stime`` from ``/proc/<pid>/stat``), read at the first and at the last verdict.
The first size is today's default, so each row compares with it in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aigis.devstack.kafka_broker import KafkaBroker
from bench.worker import _CREATED, bench_settings, export_store, fresh, run_worker_phase
from bench.worker import unique_images as make_images
from serving.torchserve.server import running_torchserve
from worker import kafka


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    sizes = [int(size) for size in args.batch_sizes.split(",") if size]
    base = bench_settings()
    images = make_images(args.events)
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
        _print("first pass", results["first_pass"])
        results["replays"] = []
        for size in sizes:
            replay = first.model_copy(
                update={
                    "topics": fresh(base, f"replay{size}").topics,
                    "worker": first.worker.model_copy(
                        update={"group_id": f"{first.worker.group_id}.{size}", "batch_size": size}
                    ),
                }
            )
            row = run_worker_phase(replay, images, f"replay{size}", ts, broker)
            row["batch_size"] = size
            results["replays"].append(row)
            _print(f"replay, batch {size}", row)
    kafka.delete_topics(base, _CREATED)
    results["load_average_at_end"] = os.getloadavg()[0]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def _print(name: str, row: dict[str, Any]) -> None:
    cpu = row["cpu_ms_per_event"]
    print(
        f"  {name:<18} {row['events_per_s']:8.1f} events/s   CPU ms/event: worker "
        f"{cpu['worker']:.2f}, broker {cpu['kafka']:.2f}, together "
        f"{cpu['worker'] + cpu['kafka']:.2f}   mean batch {row['mean_batch_size']:.1f}",
        flush=True,
    )


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=1200, help="unique images (default 1200)")
    parser.add_argument(
        "--batch-sizes", default="32,128,256", help="worker batch sizes, today's first"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()

"""Serving benchmark: the detector behind TorchServe on this machine, printed as tables.

    .venv/bin/python -m bench.serving [--trained DIR] [--quick] [--tiny-only] [--json PATH]

(as a module from the repository root: run as a script, this file would hide the ``serving``
package it measures).

What it measures (medians of nothing: each point is one run of a few seconds, so compare rows of
one run, not runs of different days):

1. TorchServe with the ``tiny`` model in fp32, for several archive settings (server batch size,
   max batch delay), under three client patterns: one item per request one at a time; one item
   per request from 16 threads; the worker's pattern (requests of 8 items, 8 in flight, from
   the worker's default settings).
2. Precision in process (no server): items/s of fp32, bf16 weights and dynamic int8 for
   ``tiny`` and ``base-random``, and how far each moves the answers on the smoke test split
   (agreement of decisions with fp32, largest p_ai change, Task A F1 when the model is trained:
   pass ``--trained`` a checkpoint from ``aigis train --preset tiny --data smoke``).
3. TorchServe with ``base-random`` in fp32 and in one reduced precision, one item at a time and
   in micro-batches: with ``--base-archive BACKEND:PRECISION``, the one ``bench.precision``
   validated near the band edges (``aigis bench`` passes its choice; only such a row counts for
   the goal); without it, the fastest of step 2 whose decisions agree with fp32's on 99 % of
   the smoke items (a weaker check, so the row is marked not validated).

Clients run in this process through ``serving.client.http.ServingClient``, on the same cores as the
server, as a worker beside TorchServe would. TorchServe uses the ``AIGIS_SERVING__*`` ports and
``<state_dir>/bench-serving``; nothing else may listen there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench.machine import describe_machine, print_machine
from bench.overhead import measure_overhead, print_overhead
from bench.serving_items import Item, distinct_captions, workload
from bench.serving_precision import (
    PrecisionPoint,
    fastest_correct,
    precision_sweep,
    print_precision,
)
from schemas.settings import Settings, WorkerSettings
from serving.client.http import ServingClient
from serving.client.management import ManagementClient
from serving.client.manifest import ArchiveInfo
from serving.client.wire import ItemResult
from serving.torchserve.archive import ExportOptions, export_archive
from serving.torchserve.server import OMP_WAIT_POLICY, TorchServe


@dataclass(frozen=True)
class Pattern:
    """How clients load the server: ``threads`` clients, each sending ``items`` per request."""

    name: str
    threads: int
    items: int


@dataclass(frozen=True)
class Point:
    preset: str
    archive: str
    pattern: str
    items_per_s: float
    p50_ms: float
    p99_ms: float
    mean_server_batch: float
    requests: int
    validated: bool = False
    """The archive's precision passed bench.precision's check near the band edges (fp32, the
    reference, passes by definition)."""
    backend: str = ""
    precision: str = ""
    """The archive's backend and precision (``serve_sweep`` records them)."""


_WORKER = WorkerSettings()
PATTERNS = (
    Pattern("1 item, one at a time", threads=1, items=1),
    Pattern("1 item, 16 concurrent", threads=16, items=1),
    Pattern(
        f"{_WORKER.request_items} items, {_WORKER.max_in_flight} in flight",
        threads=_WORKER.max_in_flight,
        items=_WORKER.request_items,
    ),
)
"""The last is the worker's pattern, from the worker's default settings."""
TINY_ARCHIVES = (
    ExportOptions(batch_size=1, max_batch_delay_ms=0),
    ExportOptions(batch_size=4, max_batch_delay_ms=5),
    ExportOptions(batch_size=8, max_batch_delay_ms=5),
    ExportOptions(batch_size=4, max_batch_delay_ms=5, workers=2),
    ExportOptions(batch_size=16, max_batch_delay_ms=20),
)


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(argv)
    seconds = 2.0 if args.quick else 4.0
    settings = Settings()
    settings = settings.model_copy(update={"state_dir": settings.state_dir / "bench-serving"})
    report: dict[str, Any] = {"machine": describe_machine()}
    print_machine(report["machine"])
    items, labelled = workload()
    with tempfile.TemporaryDirectory(prefix="aigis-bench-serving-") as scratch:
        work = Path(scratch)
        points: list[Point] = []
        precision: list[PrecisionPoint] = []
        if not args.base_only:
            points, precision = _tiny(args, settings, work, items, labelled, seconds, report)
        if args.tiny_only:
            print_precision(precision)
            _finish(report, points, precision, args.json)
            return
        base = _random_checkpoint("base-random", work / "base")
        base_items = distinct_captions(items, base)
        precision += precision_sweep("base-random", base, labelled, 3 * seconds, trained=False)
        print_precision(precision)
        base_archives, validated = _base_archives(args.base_archive, precision)
        base_points = serve_sweep(
            settings,
            "base-random",
            base,
            work / "store-base",
            base_archives,
            base_items,
            3 * seconds,
            patterns=(PATTERNS[0], PATTERNS[2]),
        )
        base_points = [
            replace(p, validated=validated or p.precision == "fp32") for p in base_points
        ]
        _print_points("TorchServe, base-random", base_points)
    _finish(report, points + base_points, precision, args.json)


def _tiny(
    args: argparse.Namespace,
    settings: Settings,
    work: Path,
    items: list[Item],
    labelled: list[tuple[Item, int]],
    seconds: float,
    report: dict[str, Any],
) -> tuple[list[Point], list[PrecisionPoint]]:
    """The tiny model's archive sweep, TorchServe's cost (into ``report``) and precisions."""
    tiny = args.trained or _random_checkpoint("tiny", work / "tiny")
    tiny_archives = TINY_ARCHIVES[1:3] if args.quick else TINY_ARCHIVES
    points = serve_sweep(settings, "tiny", tiny, work / "store-tiny", tiny_archives, items, seconds)
    _print_points("TorchServe, tiny, fp32", points)
    overhead = measure_overhead(settings, tiny, work / "store-overhead", items, 2 * seconds)
    print_overhead(overhead)
    report["overhead"] = {
        **asdict(overhead),
        "compact_gain": overhead.compact_gain,
        "torchserve_cost": overhead.torchserve_cost,
    }
    return points, precision_sweep(
        "tiny", tiny, labelled, seconds, trained=args.trained is not None
    )


def _base_archives(
    chosen: str | None, precision: list[PrecisionPoint]
) -> tuple[list[ExportOptions], bool]:
    """torch fp32 and the reduced precision to serve for base-random, and whether that one was
    validated: ``chosen`` (BACKEND:PRECISION, bench.precision's choice) when given, else the
    fastest of ``precision`` that agrees with fp32 on 99 % of the smoke items."""
    fp32 = ExportOptions(precision="fp32")
    if chosen:
        backend, _, reduced = chosen.partition(":")
        # bench.precision calibrates OpenVINO int8 on smoke items; an archive export calibrates
        # on synthetic inputs, so its graph is not the one validated.
        validated = (backend, reduced) != ("openvino", "int8")
    else:
        backend, reduced, validated = "torch", fastest_correct(precision, "base-random"), False
    if (backend, reduced) == ("torch", "fp32"):
        return [fp32], validated
    return [fp32, ExportOptions(backend=backend, precision=reduced)], validated


def _finish(
    report: dict[str, Any],
    points: list[Point],
    precision: list[PrecisionPoint],
    path: Path | None,
) -> None:
    report["serving"] = [asdict(p) for p in points]
    report["precision"] = [asdict(p) for p in precision]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {path}")


def _random_checkpoint(preset: str, directory: Path) -> Path:
    from serving.model.checkpoint import save_checkpoint
    from serving.model.presets import build_preset

    built = build_preset(preset, "fused", name=f"{preset}-fused", version="1")
    save_checkpoint(built.model, built.tokenizer, built.image_processor, built.config, directory)
    return directory


# -- TorchServe points -----------------------------------------------------------------------


def serve_sweep(
    settings: Settings,
    preset: str,
    checkpoint: Path,
    store: Path,
    options: Sequence[ExportOptions],
    items: list[Item],
    seconds: float,
    patterns: Sequence[Pattern] = PATTERNS,
) -> list[Point]:
    """Serve each archive setting in turn (one loaded at a time) and load it with ``patterns``."""
    archives = [export_archive(checkpoint, store, _versioned(o), force=True) for o in options]
    server = TorchServe(settings)
    server.start(store, models=[archives[0].path.name])
    points: list[Point] = []
    try:
        with ManagementClient(settings.serving, key_file=settings.serving_key_file) as management:
            previous: ArchiveInfo | None = None
            for archive, option in zip(archives, options, strict=True):
                if previous is not None:
                    management.register(archive.path.name)
                    management.set_default(archive.name, archive.version)
                    management.unregister(previous.name, previous.version)
                # Each pattern starts at its own share of the items, so that with items that
                # never repeat (distinct_captions) no pattern meets a caption cached before it.
                step = len(items) // len(patterns)
                points += [
                    replace(
                        measure(
                            settings,
                            preset,
                            archive.version,
                            pattern,
                            items[k * step :] + items[: k * step],
                            seconds,
                        ),
                        backend=option.backend,
                        precision=option.precision,
                    )
                    for k, pattern in enumerate(patterns)
                ]
                previous = archive
    finally:
        server.stop()
    return points


def _versioned(options: ExportOptions) -> ExportOptions:
    version = f"b{options.batch_size}-d{options.max_batch_delay_ms}-{options.precision}"
    if options.backend != "torch":
        version += f"-{options.backend}"
    if options.workers > 1:
        version += f"-w{options.workers}"
    return ExportOptions(**{**asdict(options), "version": version})


def measure(
    settings: Settings,
    preset: str,
    archive: str,
    pattern: Pattern,
    items: list[Item],
    seconds: float,
) -> Point:
    """Run ``pattern`` against the served default version for ``seconds``."""
    latencies: list[float] = []
    batches: list[int] = []
    lock = threading.Lock()
    with ServingClient(settings.serving, key_file=settings.serving_key_file) as client:
        # Warm the connection and the worker on the last items, which a timed pass reaches last.
        client.predict(items[-pattern.items :])
        stop_at = time.monotonic() + seconds

        def run(offset: int) -> None:
            position = offset
            while time.monotonic() < stop_at:
                chunk = [items[(position + i) % len(items)] for i in range(pattern.items)]
                position += pattern.items * pattern.threads
                started = time.perf_counter()
                answers = client.predict(chunk)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    batches.extend(
                        a.server_batch_size for a in answers if isinstance(a, ItemResult)
                    )

        started = time.perf_counter()
        threads = [
            threading.Thread(target=run, args=(i * pattern.items,)) for i in range(pattern.threads)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
    latencies.sort()
    return Point(
        preset=preset,
        archive=archive,
        pattern=pattern.name,
        items_per_s=len(latencies) * pattern.items / wall,
        p50_ms=1000 * latencies[len(latencies) // 2],
        p99_ms=1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        mean_server_batch=statistics.fmean(batches) if batches else 0.0,
        requests=len(latencies),
    )


# -- reporting -------------------------------------------------------------------------------


def _print_points(title: str, points: list[Point]) -> None:
    print(f"\n## {title}\n")
    print(
        "| archive (batch-delay ms-precision) | client pattern | items/s | p50 ms | p99 ms | "
        "mean server batch |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for p in points:
        print(
            f"| {p.archive} | {p.pattern} | {p.items_per_s:.1f} | {p.p50_ms:.0f} | "
            f"{p.p99_ms:.0f} | {p.mean_server_batch:.1f} |"
        )


def _backend_precision(value: str) -> str:
    backend, _, precision = value.partition(":")
    if backend not in ("torch", "onnxruntime", "openvino") or not precision:
        raise argparse.ArgumentTypeError(
            f"{value!r}: give BACKEND:PRECISION, the backend torch, onnxruntime or openvino"
        )
    return value


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--trained", type=Path, help="A trained tiny checkpoint (aigis train --preset tiny)."
    )
    parser.add_argument("--quick", action="store_true", help="Fewer, shorter points.")
    parser.add_argument("--tiny-only", action="store_true", help="Skip base-random.")
    parser.add_argument("--base-only", action="store_true", help="Skip the tiny model.")
    parser.add_argument(
        "--base-archive",
        type=_backend_precision,
        metavar="BACKEND:PRECISION",
        help="base-random's reduced precision to serve, as bench.precision validated it "
        "(e.g. openvino:bf16); default: the fastest of the in-process sweep, not validated",
    )
    parser.add_argument("--json", type=Path, help="Also write the figures to this JSON file.")
    return parser.parse_args(argv)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # As TorchServe's workers run (serving.torchserve.server), for the handler run in process.
    os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)
    main(sys.argv[1:])

"""What TorchServe costs against its own handler in process, and what the request body costs.

Part of ``bench.serving`` (run it there). The default archive is served at the worker's pattern
(requests of 8 items, 8 in flight: two server batches of 4 requests) with each request body in
turn, JSON and compact (:mod:`serving.client.wire`), alternating so that a drift of the machine's
load reaches both; then the same archive's handler runs in this process on server batches of
the same shape (4 requests of 8 items, the same bodies, the same walk through the items), with
no HTTP, frontend or socket between. TorchServe's cost is ``1 - served / in process``, both with
the compact body.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.serving_items import Item
from schemas.settings import Settings, WorkerSettings
from serving.client import wire
from serving.client.manifest import ArchiveInfo
from serving.torchserve.archive import ExportOptions

REQUEST_ITEMS = WorkerSettings().request_items
IN_FLIGHT = WorkerSettings().max_in_flight
SERVER_BATCH = ExportOptions().batch_size
"""Requests per server batch of the default archive: what the handler in process is handed."""
BODIES = ("json", "compact")


@dataclass(frozen=True)
class Overhead:
    archive: str
    served_items_per_s: dict[str, float]
    """Body format -> items/s through TorchServe (mean of its rounds)."""
    in_process_items_per_s: dict[str, float]
    """Body format -> items/s of the handler in this process, server batches of the same shape."""
    mean_server_batch: float
    load_average: tuple[float, float]
    """One-minute load average at the start and at the end."""

    @property
    def compact_gain(self) -> float:
        """Served items/s with the compact body over JSON's."""
        return self.served_items_per_s["compact"] / self.served_items_per_s["json"]

    @property
    def torchserve_cost(self) -> float:
        """Share of the in-process speed that serving through TorchServe loses (compact body)."""
        return 1 - self.served_items_per_s["compact"] / self.in_process_items_per_s["compact"]


def measure_overhead(
    settings: Settings, checkpoint: Path, store: Path, items: list[Item], seconds: float
) -> Overhead:
    """Serve the default archive of ``checkpoint``, then run its handler here; see the module."""
    import os

    from serving.torchserve.archive import export_archive
    from serving.torchserve.server import running_torchserve

    archive = export_archive(checkpoint, store, ExportOptions(version="overhead"), force=True)
    started_load = os.getloadavg()[0]
    with running_torchserve(settings, store, models=[archive.path.name]):
        served, batch = served_bodies(settings, archive.version, items, seconds)
    local = in_process(archive, items, seconds / 2)
    return Overhead(
        archive=f"{archive.name}, batch {archive.handler.get('max_forward_batch')} per pass",
        served_items_per_s=served,
        in_process_items_per_s=local,
        mean_server_batch=batch,
        load_average=(started_load, os.getloadavg()[0]),
    )


def served_bodies(
    settings: Settings, archive: str, items: list[Item], seconds: float, rounds: int = 2
) -> tuple[dict[str, float], float]:
    """Items/s through the running TorchServe for each body, alternating ``rounds`` times."""
    from bench.serving import Pattern, measure

    pattern = Pattern(f"{REQUEST_ITEMS} items, {IN_FLIGHT} in flight", IN_FLIGHT, REQUEST_ITEMS)
    speeds: dict[str, list[float]] = {body: [] for body in BODIES}
    batches = []
    for _ in range(rounds):
        for body in BODIES:
            serving = settings.serving.model_copy(update={"request_body": body})
            point = measure(
                settings.model_copy(update={"serving": serving}),
                "tiny",
                archive,
                pattern,
                items,
                seconds / rounds,
            )
            speeds[body].append(point.items_per_s)
            batches.append(point.mean_server_batch)
    return {b: statistics.fmean(s) for b, s in speeds.items()}, statistics.fmean(batches)


def in_process(archive: ArchiveInfo, items: list[Item], seconds: float) -> dict[str, float]:
    """Items/s of the archive's handler in this process, per body, on server batches of
    ``SERVER_BATCH`` requests of ``REQUEST_ITEMS`` items walking through ``items``."""
    with tempfile.TemporaryDirectory(prefix="aigis-bench-handler-") as directory:
        return _timed_bodies(archive, Path(directory), items, seconds)


def _timed_bodies(
    archive: ArchiveInfo, directory: Path, items: list[Item], seconds: float
) -> dict[str, float]:
    handler, context_for = _loaded_handler(archive.path, directory)
    speeds = {}
    for body in BODIES:
        done, position, started = 0, 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            rows = []
            for _ in range(SERVER_BATCH):
                chunk = [items[(position + i) % len(items)] for i in range(REQUEST_ITEMS)]
                rows.append({"body": _body(chunk, body)})
                position += REQUEST_ITEMS
            handler.handle(rows, context_for(len(rows)))
            done += SERVER_BATCH * REQUEST_ITEMS
        speeds[body] = done / (time.perf_counter() - started)
    return speeds


def _body(chunk: Sequence[Item], body: str) -> Any:
    if body == "compact":
        return wire.compact_body(chunk)
    # TorchServe hands the handler a JSON body already parsed: so does this.
    return json.loads(wire.dumps([wire.item_json(*item) for item in chunk]))


def _loaded_handler(archive: Path, directory: Path) -> tuple[Any, Any]:
    """The archive's handler, unpacked into ``directory`` and initialised as TorchServe
    initialises it, and a maker of contexts."""
    import yaml
    from ts.context import Context, RequestProcessor

    from serving.torchserve.handler import DetectorHandler

    with zipfile.ZipFile(archive) as mar:
        mar.extractall(directory)
    manifest = json.loads((directory / "MAR-INF" / "MANIFEST.json").read_text())
    config = yaml.safe_load((directory / manifest["model"]["configFile"]).read_text())

    def context_for(rows: int) -> Context:
        context = Context(
            manifest["model"]["modelName"],
            str(directory),
            manifest,
            rows,
            None,
            "0.12.0",
            model_yaml_config=config,
        )
        context.request_processor = [RequestProcessor({}) for _ in range(rows)]
        return context

    handler = DetectorHandler()
    handler.initialize(context_for(1))
    return handler, context_for


def print_overhead(result: Overhead) -> None:
    print(f"\n## TorchServe against its handler in process ({result.archive})\n")
    print(
        f"{IN_FLIGHT} requests of {REQUEST_ITEMS} items in flight; in process: server batches of "
        f"{SERVER_BATCH} requests, as TorchServe hands them over. Load average "
        f"{result.load_average[0]:.1f} at start, {result.load_average[1]:.1f} at end.\n"
    )
    print("| body | TorchServe items/s | handler in process items/s | TorchServe cost |")
    print("| --- | ---: | ---: | ---: |")
    for body in BODIES:
        served, local = result.served_items_per_s[body], result.in_process_items_per_s[body]
        print(f"| {body} | {served:.1f} | {local:.1f} | {1 - served / local:.0%} |")
    print(
        f"\ncompact body / JSON through TorchServe: {result.compact_gain:.2f}x; "
        f"mean server batch {result.mean_server_batch:.1f} requests"
    )

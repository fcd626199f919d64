"""The cache-hit replay against the first pass on the base model: one phase of ``bench.replay``.

A ``base-random`` fused archive exported as ``aigis export`` exports a fused checkpoint on a CPU
(:func:`serving.model.backend_choice.default_backend`'s backend at precision ``auto``, the
other options at their defaults), served by its own TorchServe on the ``AIGIS_SERVING__*``
ports. One worker process (exactly-once, batch 32) scores N images that are not
near-duplicates of one another (the first pass, which fills the cache of this model's version);
then the same images are published again, ``repeat`` times in a row so that the replay lasts
long enough to time, and a worker at batch 32 answers every one from that cache. The ratio of
the two rates is the replay goal on the base model (at least 20x the first pass), both measured
in this run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.images import distinct_images
from bench.worker import export_store, fresh, replay_of, run_worker_phase
from schemas.settings import Settings
from serving.model.backend_choice import default_backend, resolve_precision
from serving.torchserve.archive import ExportOptions
from serving.torchserve.server import running_torchserve

__all__ = ["BATCH_SIZE", "PRESET", "base_replay"]

PRESET = "base-random"
BATCH_SIZE = 32
"""Both passes run at batch 32, the batch of bench.replay's baseline ("today's code")."""


def base_replay(
    settings: Settings, broker: int | None, events: int, repeat: int = 4
) -> dict[str, Any]:
    """The first pass over ``events`` distinct images on the base model, then their cache-hit
    replay (each image ``repeat`` times); both rows as :func:`bench.worker.run_worker_phase`
    gives them, and ``ratio``: replay events/s over first-pass events/s."""
    options = ExportOptions(version="base-1", backend=default_backend("fused"))
    images = distinct_images(events)
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_torchserve(settings, export_store(Path(tmp), options, preset=PRESET)) as ts,
    ):
        first = fresh(settings, "base-first", batch_size=BATCH_SIZE)
        first_row = run_worker_phase(first, images, "base-first", ts, broker)
        replay = replay_of(first, "base-replay")
        replay_row = run_worker_phase(replay, images * repeat, "base-replay", ts, broker)
    return {
        "preset": PRESET,
        "backend": options.backend,
        "precision": resolve_precision(options.backend, options.precision, "cpu"),
        "events": events,
        "replay_events": events * repeat,
        "batch_size": BATCH_SIZE,
        "first_pass": first_row,
        "replay": replay_row,
        "ratio": replay_row["events_per_s"] / first_row["events_per_s"],
    }

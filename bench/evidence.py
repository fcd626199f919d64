"""Benchmark of the evidence stage: its cost per image, the worker with it on and off, and the
near-duplicate lookup at growing numbers of stored hashes.

Needs Kafka and Redis (``aigis dev up``); starts its own TorchServe with the tiny model on the
``AIGIS_SERVING__*`` ports. From the repository root:

    .venv/bin/python -m bench.evidence [--events 200] [--rounds 3] [--sizes 10000 100000]
        [--json out.json]

1. Stage cost per image and per kind of artefact (a plain smoke JPEG, a signed C2PA JPEG, A1111
   and ComfyUI PNGs, EXIF and XMP JPEGs): the signal readers, and the PDQ hashing of the
   near-duplicate step; median and p99 over repeated reads. The SDXL watermark, which the model
   server reads when an archive asks for it, is timed the same way (its full-size decode and the
   decoder) on 512- and 1024-pixel PNGs.
2. Worker events/s on a backlog of images that are not near-duplicates of one another
   (:func:`bench.images.distinct_images`: the near-duplicate step costs its lookups but answers
   none), in one run (fresh topics and cache prefix each, the same TorchServe, its watermark
   reading off): the evidence stage off, the signals only, and the signals with the
   near-duplicate cache, interleaved ``--rounds`` times; the median of each.
3. Near-duplicate lookup: a list of N random hashes in Redis; one worker's first lookup (reading
   the whole list) and then single-image lookups (one round trip for what is new, and the scan),
   median and p99; memory per hash of the local copy and of the list in Redis.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from aigis import samples as art
from aigis.devstack.kafka_broker import KafkaBroker
from bench.images import distinct_images
from bench.worker import (
    _CREATED,
    bench_settings,
    export_store,
    fresh,
    run_worker_phase,
)
from schemas.settings import Settings
from serving.imageio import decode_image
from serving.torchserve.server import running_torchserve
from serving.torchserve.watermark import embed_sdxl_watermark, read_watermark
from worker import kafka
from worker.evidence import EvidenceReader
from worker.neardup import HASH_BYTES, MIRROR, Hashed, NearDuplicates, pdq
from worker.redis_client import connect


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


def _timed(call: Callable[[], object], repeat: int) -> dict[str, float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return _percentiles(samples)


def smoke_jpeg() -> bytes:
    """The first JPEG of the smoke test split, as stored."""
    from training.data import load_split

    samples = load_split("smoke", "test", normalise=False, require_labels=False)
    return next(s.image for s in samples if s.image.startswith(b"\xff\xd8"))


def stage_cost(settings: Settings, smoke: bytes, repeat: int) -> dict[str, Any]:
    """Readers and hashing, per kind of image."""
    cred = art.credential()
    root = Path(tempfile.mkdtemp()) / "anchors.pem"
    root.write_text(cred.root_pem)
    reader = EvidenceReader(settings.evidence.model_copy(update={"trust_anchors_file": root}))
    image = art.photo(1, (512, 512))
    images = {
        "plain_smoke_jpeg": smoke,
        "c2pa_signed_jpeg": art.signed_jpeg(cred, image),
        "a1111_png": art.a1111_png(image),
        "comfyui_png": art.comfyui_png(image),
        "exif_jpeg": art.exif_jpeg(image),
        "xmp_jpeg": art.xmp_jpeg(image, art.xmp_packet("Adobe Firefly")),
    }
    out: dict[str, Any] = {}
    for name, data in images.items():
        out[name] = {
            "bytes": len(data),
            "signals": [s.kind for s in reader.read(data).signals],
            "read": _timed(partial(reader.read, data), repeat),
            "pdq": _timed(partial(_hash, data, settings), repeat),
        }
    reader.close()
    for side in (512, 1024):
        marked = art.png(embed_sdxl_watermark(art.photo(2, (side, side))))

        def watermark(data: bytes = marked) -> object:
            return read_watermark(decode_image(data), 2048 * 2048)

        assert watermark() is not None
        out[f"sdxl_watermark_png_{side}"] = {
            "bytes": len(marked),
            "signals": ["sd_watermark (server)"],
            "read": _timed(watermark, max(10, repeat // 10)),
            "pdq": _timed(partial(_hash, marked, settings), repeat // 10),
        }
    return out


def _hash(data: bytes, settings: Settings) -> object:
    """PDQ as the worker hashes a miss: the orientations its lookup searches."""
    ev = settings.evidence
    return pdq(data, ev.hash_side, rotations=ev.match_rotations)


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Variables the worker subprocess reads (``subprocess_env`` copies the environment)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def on_off(base: Settings, events: int, rounds: int) -> dict[str, Any]:
    """Worker backlog throughput against one TorchServe: the stage off, signals only, and
    signals with near-duplicates, interleaved ``rounds`` times (the machine's load drifts); the
    median of each phase's rounds."""
    phases = (("off", "false", "false"), ("signals", "true", "false"), ("on", "true", "true"))
    images = iter(distinct_images(len(phases) * rounds * events))
    broker = KafkaBroker(base).pid()
    runs: dict[str, list[dict[str, Any]]] = {tag: [] for tag, _, _ in phases}
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_torchserve(base, export_store(Path(tmp))) as ts,
    ):
        for _ in range(rounds):
            for tag, signals, near in phases:
                settings = fresh(base, f"evidence-{tag}")
                batch = [next(images) for _ in range(events)]
                with _environment(
                    AIGIS_EVIDENCE__ENABLED=signals, AIGIS_EVIDENCE__NEAR_DUPLICATES=near
                ):
                    runs[tag].append(run_worker_phase(settings, batch, tag, ts, broker))
    kafka.delete_topics(base, _CREATED)
    out: dict[str, Any] = {
        tag: {
            "events_per_s": statistics.median(r["events_per_s"] for r in phase_runs),
            "rounds": phase_runs,
        }
        for tag, phase_runs in runs.items()
    }
    for tag in ("signals", "on"):
        out[f"{tag}_over_off"] = out[tag]["events_per_s"] / out["off"]["events_per_s"]
    return out


def lookups(base: Settings, sizes: list[int], repeat: int) -> dict[str, Any]:
    """Near-duplicate lookups against N stored random hashes."""
    client = connect(base)
    out: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    try:
        for size in sizes:
            prefix = f"bench.neardup.{uuid.uuid4().hex[:6]}"
            settings = base.model_copy(
                update={"redis": base.redis.model_copy(update={"key_prefix": prefix})}
            )
            store = NearDuplicates(settings, client)
            raw = rng.integers(0, 256, size=(size, HASH_BYTES), dtype=np.uint8)
            for start in range(0, size, 10_000):
                store.store(
                    "1",
                    [
                        (Hashed((row.tobytes(),) * 8, 100), f"{i:064x}")
                        for i, row in enumerate(raw[start : start + 10_000], start)
                    ],
                )
            hashes, memory = 0, 0
            entry: dict[str, Any] = {}
            for rotations in (False, True):
                ev = settings.evidence.model_copy(update={"match_rotations": rotations})
                reader = NearDuplicates(settings.model_copy(update={"evidence": ev}), client)
                # A mirrored copy of stored image 7, or one rotated by 90 degrees: its
                # orientation 5 (mirrored back) or 3 (rotated back) is the stored hash.
                orientations = [
                    r.tobytes() for r in rng.integers(0, 256, (8, HASH_BYTES), np.uint8)
                ]
                orientations[3 if rotations else MIRROR] = raw[7].tobytes()
                query = [(Hashed(tuple(orientations), 100), "f" * 64)]
                batch = query + [
                    (Hashed(tuple(r.tobytes() for r in rows), 100), "f" * 64)
                    for rows in rng.integers(0, 256, (31, 8, HASH_BYTES), np.uint8)
                ]
                started = time.perf_counter()
                first = reader.lookup("1", query)
                first_s = time.perf_counter() - started
                assert first[0] is not None
                assert first[0].distance == 0
                hashes, memory = reader.footprint("1")
                entry["rotations" if rotations else "mirror"] = {
                    "first_lookup_ms": 1000 * first_s,
                    "lookup": _timed(partial(reader.lookup, "1", query), repeat),
                    "batch_of_32": _timed(
                        partial(reader.lookup, "1", batch), max(repeat // 10, 10)
                    ),
                }
            out[str(size)] = {
                **entry,
                "bytes_per_hash_in_worker": memory / hashes,
                "bytes_per_hash_in_redis": client.memory_usage(f"{prefix}:pdq:1", samples=0) / size,
            }
            client.delete(f"{prefix}:pdq:1")
    finally:
        client.close()
    return out


def report(r: dict[str, Any]) -> None:
    print("evidence stage per image, ms (median / p99):")
    for name, c in r["stage"].items():
        read, hashing = c["read"], c["pdq"]
        print(
            f"  {name:<18} {c['bytes']:>8} bytes  signals {read['median_ms']:.3f} / "
            f"{read['p99_ms']:.3f}  pdq {hashing['median_ms']:.3f} / {hashing['p99_ms']:.3f}"
            f"  [{', '.join(c['signals']) or 'none'}]"
        )
    if "worker" in r:
        w = r["worker"]

        def phase(tag: str) -> str:
            rounds = ", ".join(f"{run['events_per_s']:.1f}" for run in w[tag]["rounds"])
            return f"{w[tag]['events_per_s']:.1f} (rounds {rounds})"

        print(
            f"worker events/s, median: stage off {phase('off')}; signals only "
            f"{phase('signals')}, {w['signals_over_off']:.2f} of off; signals and "
            f"near-duplicates {phase('on')}, {w['on_over_off']:.2f} of off"
        )
    for size, c in r["lookups"].items():
        for tag, what in (("mirror", "image and mirror"), ("rotations", "eight orientations")):
            one, batch = c[tag]["lookup"], c[tag]["batch_of_32"]
            print(
                f"near-duplicate lookup at {int(size):>7} hashes, {what}: first"
                f" {c[tag]['first_lookup_ms']:.1f} ms, then p50 {one['median_ms']:.2f} ms,"
                f" p99 {one['p99_ms']:.2f} ms; a batch of 32: p50 {batch['median_ms']:.1f} ms"
            )
        print(
            f"  bytes a hash: {c['bytes_per_hash_in_worker']:.0f} in the worker,"
            f" {c['bytes_per_hash_in_redis']:.0f} in Redis"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200, help="per worker phase; 0: skip them")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="of the worker phases, interleaved")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    base = bench_settings()
    results: dict[str, Any] = {
        "stage": stage_cost(base, smoke_jpeg(), args.repeat),
        "lookups": lookups(base, args.sizes, args.repeat),
    }
    if args.events:
        results["worker"] = on_off(base, args.events, args.rounds)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""Benchmark of the streaming worker against TorchServe's own throughput and a naive worker.

Needs Kafka and Redis (``aigis dev up``); starts its own TorchServe with the tiny model on the
``AIGIS_SERVING__*`` ports. Every phase uses fresh topics, group and cache prefix, and images
that differ in their pixels (:func:`bench.images.distinct_images`), so that a scoring phase
scores every event: neither the exact cache nor the near-duplicate step can answer one from
another. The report prints each phase's cache hits and checks that the scoring phases had none.

    .venv/bin/python -m bench.worker [--events 600] [--naive-events 60] [--json results.json]

(as a module from the repository root: run as a script, ``bench/`` would come first on the path
and this file and ``bench/serving.py`` would shadow the ``worker`` and ``serving`` packages).
Phases, all in one run so the ratios compare like with like:

1. TorchServe alone: ``predict_many`` with the worker's request size and concurrency, on the
   images the worker scores.
2. Worker, exactly-once and at-least-once: a backlog of N events; events/s from the first
   committed verdict to the last.
3. Cache-hit replay: the exactly-once phase's images again as new events, against its cache.
4. Latency: events produced at half the measured rate; end-to-end p50/p99 from ``produced_at``
   to the verdict being readable (read_committed).
5. Naive worker: one event at a time, one request, one produce, one commit, no cache.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aigis.devstack.kafka_broker import KafkaBroker
from bench.images import distinct_images
from bench.processes import cpu_seconds, free_port, group_pids, scrape, worker_process
from bench.worker_report import report
from schemas import ImageEvent, Timings, decode, encode
from schemas.settings import Guarantee, Settings
from serving.client.http import ServingClient
from serving.client.wire import ItemResult
from serving.torchserve.archive import ExportOptions, export_random
from serving.torchserve.server import TorchServe, running_torchserve
from worker import kafka
from worker.route import build_verdict
from worker.score import Score
from worker.tail import partitions

_CREATED: list[str] = []
"""Topics this run created, deleted at the end."""


def bench_settings() -> Settings:
    """The environment's settings, with a free metrics port and a fixed instance id."""
    base = Settings()
    return base.model_copy(
        update={
            "worker": base.worker.model_copy(
                update={"metrics_port": free_port(), "instance_id": "bench"}
            )
        }
    )


def fresh(settings: Settings, tag: str, **worker: Any) -> Settings:
    """Settings with new topics, group and cache prefix (created here)."""
    run = f"bench.{tag}.{uuid.uuid4().hex[:6]}"
    topics = settings.topics.model_copy(
        update={f: f"{run}.{f.replace('_', '-')}" for f in type(settings.topics).model_fields}
    )
    kafka.ensure_topics(settings, topics.all())
    _CREATED.extend(topics.all())
    return settings.model_copy(
        update={
            "topics": topics,
            "redis": settings.redis.model_copy(update={"key_prefix": run}),
            "worker": settings.worker.model_copy(update={"group_id": run, **worker}),
        }
    )


def replay_of(settings: Settings, tag: str, **worker: Any) -> Settings:
    """``settings`` with fresh topics and a group of its own, reading the same cache: a replay of
    what ``settings``'s worker scored."""
    return settings.model_copy(
        update={
            "topics": fresh(settings, tag).topics,
            "worker": settings.worker.model_copy(
                update={"group_id": f"{settings.worker.group_id}.{tag}", **worker}
            ),
        }
    )


class Arrivals:
    """Reads committed verdicts as they arrive and notes when each became readable."""

    def __init__(self, settings: Settings) -> None:
        self.at: dict[str, float] = {}
        self._stop = threading.Event()
        self._consumer = kafka.consumer(settings, group_id=None)
        self._consumer.assign(partitions(self._consumer, settings.topics.verdicts))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for records in self._consumer.poll(timeout_ms=100).values():
                now = time.time()
                for r in records:
                    self.at.setdefault(r.key.decode(), now)

    def wait(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.at) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.at)} of {count} verdicts after {timeout_s} s")
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close(autocommit=False)


def publish(
    settings: Settings, images: Sequence[tuple[bytes, str | None]], tag: str
) -> dict[str, float]:
    """Publish one event per image; returns event id -> produced_at (epoch seconds)."""
    producer = kafka.producer(settings)
    produced: dict[str, float] = {}
    for i, (image, caption) in enumerate(images):
        now = datetime.now(UTC)
        event = ImageEvent.inline(f"{tag}-{i}", image, caption=caption, produced_at=now)
        producer.send(settings.topics.images, value=encode(event), key=event.event_id.encode())
        produced[event.event_id] = now.timestamp()
    producer.flush(timeout=120)
    producer.close()
    return produced


def run_worker_phase(
    settings: Settings,
    images: Sequence[tuple[bytes, str | None]],
    tag: str,
    torchserve: TorchServe,
    broker: int | None,
    **process: Any,
) -> dict[str, Any]:
    """Backlog throughput of one worker process, and where its time and CPU went. ``process``:
    options of :func:`bench.processes.worker_process` (another checkout, more environment)."""
    produced = publish(settings, images, tag)
    arrivals = Arrivals(settings)
    serve_pids = group_pids(torchserve.pid())
    with worker_process(settings, **process) as proc:
        arrivals.wait(1, 120)
        first = min(arrivals.at.values())
        done_first = len(arrivals.at)
        cpu0 = (
            cpu_seconds([proc.pid]),
            cpu_seconds(serve_pids),
            cpu_seconds([broker] if broker else []),
        )
        arrivals.wait(len(produced), 600)
        cpu1 = (
            cpu_seconds([proc.pid]),
            cpu_seconds(serve_pids),
            cpu_seconds([broker] if broker else []),
        )
        metrics = scrape(settings.worker.metrics_port)
    arrivals.close()
    last = max(arrivals.at.values())
    events = len(produced) - done_first
    wall = last - first
    batch_s = metrics.get("aigis_worker_batch_seconds_sum", 0.0)
    return {
        "events_per_s": events / wall,
        "cpu_ms_per_event": {
            name: 1000 * (b - a) / events
            for name, a, b in zip(("worker", "torchserve", "kafka"), cpu0, cpu1, strict=True)
        },
        "serving_share_of_batch_time": metrics.get("aigis_worker_serving_wait_seconds_sum", 0.0)
        / batch_s
        if batch_s
        else None,
        **hits(metrics),
        "mean_batch_size": metrics.get("aigis_worker_batch_size_sum", 0.0)
        / max(1.0, metrics.get("aigis_worker_batch_size_count", 1.0)),
    }


def hits(metrics: dict[str, float]) -> dict[str, float]:
    """A phase's cache hits (exact or near-duplicate) and misses, from its worker's metrics."""
    return {
        "cache_hits": metrics.get("aigis_worker_cache_hits_total", 0.0),
        "cache_misses": metrics.get("aigis_worker_cache_misses_total", 0.0),
    }


def run_latency_phase(
    settings: Settings, images: Sequence[tuple[bytes, str | None]], rate: float, seconds: float
) -> dict[str, Any]:
    """Events at ``rate``/s for ``seconds``; end-to-end latency percentiles in ms."""
    count = int(rate * seconds)
    arrivals = Arrivals(settings)
    produced: dict[str, float] = {}
    producer = kafka.producer(settings)
    with worker_process(settings):
        publish(settings, images[:1], "warm")  # joins the group and loads before timing starts
        arrivals.wait(1, 120)
        start = time.monotonic()
        for i in range(count):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            image, caption = images[1 + i]
            now = datetime.now(UTC)
            event = ImageEvent.inline(f"lat-{i}", image, caption=caption, produced_at=now)
            producer.send(settings.topics.images, value=encode(event), key=event.event_id.encode())
            produced[event.event_id] = now.timestamp()
        producer.flush()
        arrivals.wait(count + 1, 300)
        metrics = scrape(settings.worker.metrics_port)
    producer.close()
    arrivals.close()
    latencies = sorted(1000 * (arrivals.at[k] - t) for k, t in produced.items())
    return {
        "rate_per_s": rate,
        "p50_ms": statistics.quantiles(latencies, n=100)[49],
        "p99_ms": statistics.quantiles(latencies, n=100)[98],
        "latencies_ms": latencies,
        **hits(metrics),
    }


def run_naive(
    settings: Settings, images: Sequence[tuple[bytes, str | None]], client: ServingClient
) -> float:
    """One event at a time: poll one, one request, produce and wait, commit. Events/s."""
    publish(settings, images, "naive")
    consumer = kafka.consumer(
        settings, group_id=settings.worker.group_id, topics=[settings.topics.images]
    )
    producer = kafka.producer(settings)
    done, started = 0, None
    while done < len(images):
        for records in consumer.poll(timeout_ms=500, max_records=1).values():
            for record in records:
                started = started or time.monotonic()
                event = decode(ImageEvent, record.value)
                [answer] = client.predict([(event.inline_bytes() or b"", event.caption)])
                assert isinstance(answer, ItemResult)
                verdict = build_verdict(
                    event,
                    "0" * 64,
                    Score.of(answer),
                    cached=False,
                    timings=Timings(),
                    settings=settings.worker,
                )
                producer.send(settings.topics.verdicts, value=encode(verdict), key=record.key).get(
                    timeout=30
                )
                consumer.commit()
                done += 1
    elapsed = time.monotonic() - (started or time.monotonic())
    consumer.close()
    producer.close()
    return (done - 1) / elapsed


def run_direct(
    settings: Settings,
    images: Sequence[tuple[bytes, str | None]],
    client: ServingClient,
    seconds: float,
) -> float:
    """TorchServe's own throughput at the worker's request size and concurrency. Items/s."""
    w = settings.worker
    done, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        chunk = [images[(done + i) % len(images)] for i in range(w.batch_size * 4)]
        client.predict_many(chunk, request_items=w.request_items, max_in_flight=w.max_in_flight)
        done += len(chunk)
    return done / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=600)
    parser.add_argument("--naive-events", type=int, default=60)
    parser.add_argument("--direct-seconds", type=float, default=15.0)
    parser.add_argument("--latency-seconds", type=float, default=15.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    base = bench_settings()
    images = distinct_images(args.events * 3 + args.naive_events + 2000)
    broker = KafkaBroker(base).pid()
    results: dict[str, Any] = {"settings": base.worker.model_dump(mode="json")}
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_torchserve(base, export_store(Path(tmp))) as ts,
        ServingClient(base.serving, key_file=base.serving_key_file) as client,
    ):
        w = base.worker  # warm up
        client.predict_many(
            images[:64], request_items=w.request_items, max_in_flight=w.max_in_flight
        )
        # The machine's load drifts: TorchServe alone is measured before and after the worker
        # phases, and the worker is compared with the mean of the two.
        before = run_direct(base, images, client, args.direct_seconds / 2)
        n = args.events
        eo = fresh(base, "eo")
        results["worker_exactly_once"] = run_worker_phase(eo, images[:n], "eo", ts, broker)
        # The same phase with the JSON body, for the compact body's gain in the worker.
        as_json = fresh(base, "eo-json").model_copy(
            update={"serving": base.serving.model_copy(update={"request_body": "json"})}
        )
        results["worker_exactly_once_json"] = run_worker_phase(
            as_json, images[n : 2 * n], "eo-json", ts, broker
        )
        alo = fresh(base, "alo", guarantee=Guarantee.AT_LEAST_ONCE)
        results["worker_at_least_once"] = run_worker_phase(
            alo, images[n : 2 * n], "alo", ts, broker
        )
        replay = replay_of(eo, "replay")
        results["cache_hit_replay"] = run_worker_phase(replay, images[:n], "replay", ts, broker)
        after = run_direct(base, images, client, args.direct_seconds / 2)
        results["torchserve_items_per_s"] = (before + after) / 2
        results["torchserve_items_per_s_before_after"] = [before, after]
        # Well below capacity, so that the figures are latency, not queueing behind a backlog.
        rate = 0.5 * min(results["worker_exactly_once"]["events_per_s"], after)
        results["latency"] = run_latency_phase(
            fresh(base, "lat"), images[2 * n :], rate, args.latency_seconds
        )
        naive = fresh(base, "naive")
        results["naive_events_per_s"] = run_naive(naive, images[-args.naive_events :], client)
    kafka.delete_topics(base, _CREATED)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def export_store(root: Path, options: ExportOptions | None = None, *, preset: str = "tiny") -> Path:
    """A model store under ``root`` holding one random ``preset`` archive (default: the tiny
    model, version 1, the archive defaults)."""
    store = root / "store"
    export_random(store, options or ExportOptions(version="1"), preset=preset)
    return store


if __name__ == "__main__":
    main()

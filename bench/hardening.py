"""What the input checks cost per event: bounded decoding, the per-record barrier, the byte
budget of a micro-batch and the URI fetch policy, each measured against the same work without it
in one run, and put beside the worker's own cost per event.

    .venv/bin/python -m bench.hardening [--events 2000] [--worker-ms 6.5]

``--worker-ms`` is the worker's measured time per event (bench/results/: 1000 / events per
second of the exactly-once worker); the report prints each check's overhead in microseconds and
as a share of it. No services are needed: the checks are pure CPU.
"""

from __future__ import annotations

import argparse
import io
import json
import threading
import time
from collections import namedtuple
from collections.abc import Callable
from typing import Any

from PIL import Image

from schemas import ImageEvent, decode, encode
from schemas.settings_fetch import FetchSettings
from worker.fetch.policy import FetchPolicy
from worker.runtime.batch import collect

Rec = namedtuple("Rec", "topic partition offset key value")


def _event_bytes(count: int) -> list[bytes]:
    buffer = io.BytesIO()
    Image.effect_noise((224, 224), 40).convert("RGB").save(buffer, "JPEG", quality=85)
    image = buffer.getvalue()
    return [
        encode(ImageEvent.inline(f"ev-{i}", image, caption=f"a photo number {i}"))
        for i in range(count)
    ]


def _compare(
    without: Callable[[], object], with_: Callable[[], object], events: int, repeat: int = 7
) -> tuple[float, float]:
    """Microseconds per event of each, the best of ``repeat`` runs taken in turns, so that a
    change of load on the machine touches both alike."""
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        for index, work in enumerate((without, with_)):
            started = time.perf_counter()
            work()
            best[index] = min(best[index], time.perf_counter() - started)
    return best[0] / events * 1e6, best[1] / events * 1e6


def decoding(values: list[bytes]) -> tuple[float, float]:
    """Bounded ``decode`` against the unbounded parse and validation it wraps."""

    def plain() -> None:
        for value in values:
            ImageEvent.model_validate(json.loads(value))

    def bounded() -> None:
        for value in values:
            decode(ImageEvent, value)

    return _compare(plain, bounded, len(values))


def barrier(values: list[bytes]) -> tuple[float, float]:
    """A try/except around each record's step, against the bare step."""

    def bare() -> None:
        for value in values:
            decode(ImageEvent, value)

    def guarded() -> None:
        for value in values:
            try:
                decode(ImageEvent, value)
            except Exception:  # noqa: S112 - what the barrier does, measured
                continue

    return _compare(bare, guarded, len(values))


class _Poller:
    def __init__(self, records: list[Rec]) -> None:
        self.records = records

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Rec]]:
        taken, self.records = self.records[: max_records or 500], self.records[max_records or 500 :]
        return {"p": taken} if taken else {}

    def seek(self, partition: Any, offset: int) -> None:
        pass


def byte_budget(values: list[bytes]) -> tuple[float, float]:
    """Collecting micro-batches of 32 with and without the byte budget."""
    records = [Rec("t", 0, i, None, v) for i, v in enumerate(values)]
    stop = threading.Event()

    def run(max_bytes: int | None) -> Callable[[], None]:
        def work() -> None:
            poller = _Poller(list(records))
            while collect(poller, max_records=32, timeout_ms=0, stop=stop, max_bytes=max_bytes):
                pass

        return work

    return _compare(run(None), run(64 * 1024 * 1024), len(values))


def fetch_policy(count: int) -> tuple[float, float]:
    """Judging an https URI by the policy (no network: the host is an address literal)."""
    policy = FetchPolicy(FetchSettings())
    uris = [f"https://93.184.216.{i % 250}/images/{i}.jpg?sig=abc" for i in range(count)]

    def nothing() -> None:
        for _ in uris:
            pass

    def judged() -> None:
        for uri in uris:
            policy.target(uri)

    return _compare(nothing, judged, count)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hardening", description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--worker-ms", type=float, default=6.5)
    args = parser.parse_args()
    values = _event_bytes(args.events)
    rows = {
        "bounded decode": decoding(values),
        "per-record barrier": barrier(values),
        "byte budget": byte_budget(values),
        "fetch policy (URI events)": fetch_policy(args.events),
    }
    print(f"per event, {args.events} events of {len(values[0])} bytes; worker {args.worker_ms} ms")
    print("| check | without (us) | with (us) | overhead (us) | share of the worker's time |")
    print("| --- | ---: | ---: | ---: | ---: |")
    total = 0.0
    for name, (without, with_) in rows.items():
        extra = with_ - without
        total += max(0.0, extra)
        share = extra / (args.worker_ms * 1000)
        print(f"| {name} | {without:.1f} | {with_:.1f} | {extra:.1f} | {share:.2%} |")
    print(f"| all together | | | {total:.1f} | {total / (args.worker_ms * 1000):.2%} |")


if __name__ == "__main__":
    main()

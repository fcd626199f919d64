"""What a campaign does when: one seed, one timeline of faults."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    at_s: float
    action: str
    """``kill`` (SIGKILL a running worker), ``serving_stop``/``serving_start``,
    ``cache_stop``/``cache_start``, ``broker_restart``."""


@dataclass(frozen=True)
class Plan:
    seed: int
    workers: int
    events: int
    publish_s: float
    """Events are published evenly over this many seconds from the start."""
    faults: tuple[Fault, ...]

    def describe(self) -> str:
        lines = [
            f"seed {self.seed}: {self.events} events over {self.publish_s:.0f} s, "
            f"{self.workers} workers"
        ]
        lines += [f"  {f.at_s:6.1f} s  {f.action}" for f in self.faults]
        return "\n".join(lines)


def plan(seed: int, *, events: int, window_s: float = 60.0) -> Plan:
    """The faults of ``seed`` within ``window_s`` seconds, with two or three workers.

    Workers are SIGKILLed every 1-6 s (each restarted 0.3-3 s later, so rebalances keep
    happening); TorchServe is down for 10-20 s early on, while partitions are held and members
    die; Redis is down for 8-15 s overlapping the serving outage or the kills after it; the
    broker restarts once after everything is published, kills still going on.
    """
    rng = random.Random(seed)
    workers = rng.choice((2, 3))
    faults: list[Fault] = []
    t = rng.uniform(1.0, 4.0)
    while t < window_s:
        faults.append(Fault(t, "kill"))
        t += rng.uniform(1.0, 6.0)
    serving_at = rng.uniform(4.0, 0.3 * window_s)
    serving_for = rng.uniform(10.0, 20.0)
    faults += [Fault(serving_at, "serving_stop"), Fault(serving_at + serving_for, "serving_start")]
    cache_at = serving_at + rng.uniform(0.0, serving_for + 10.0)
    cache_for = rng.uniform(8.0, 15.0)
    faults += [Fault(cache_at, "cache_stop"), Fault(cache_at + cache_for, "cache_start")]
    publish_s = 0.55 * window_s
    faults.append(Fault(rng.uniform(publish_s + 3.0, window_s - 5.0), "broker_restart"))
    faults.sort(key=lambda f: f.at_s)
    return Plan(seed, workers, events, publish_s, tuple(faults))

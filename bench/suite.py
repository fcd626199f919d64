"""Every benchmark of the project in one run: ``aigis bench`` (or ``make bench``).

    .venv/bin/python -m bench.suite [--quick] [--trained DIR] [--gpu JSON]
                                    [--only inputs,model,precision,serving,worker,replay]

Runs ``bench.inputs``, ``bench.model``, ``bench.precision`` (the base model's CPU backends,
validated; it gives the base model's in-process goal), ``bench.serving``, ``bench.worker`` and
``bench.replay`` one after the other (each in its own process, so one's threads and servers never
disturb the next), prints the issue's goals beside their figures (:mod:`bench.goals`; ``--gpu``
adds the figures ``bench/gpu.sh`` wrote on a GPU machine), then writes
``bench/results/<date>.json`` (the machine and every figure), ``bench/results/<date>.md`` (the
tables) and two plots: ``<date>-throughput.png`` (items/s against TorchServe's server batch
size) and ``<date>-latency.png`` (the worker's end-to-end latency distribution).

Kafka and Redis are started with ``aigis dev up`` when they are not running (the worker
benchmark needs them); the benchmarks start their own TorchServe.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.goals import goals, markdown_rows
from bench.worker_report import scoring_check

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PARTS = ("inputs", "model", "precision", "serving", "worker", "replay")


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    parts = [p for p in args.only.split(",") if p] if args.only else list(PARTS)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {', '.join(PARTS)}", file=sys.stderr)
        return 2
    if "worker" in parts or "replay" in parts:
        _run([sys.executable, "-m", "aigis.cli", "dev", "up"])
    report: dict[str, Any] = {"date": datetime.now(UTC).isoformat(), "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="aigis-bench-") as tmp:
        for part in parts:
            out = Path(tmp) / f"{part}.json"
            command = [sys.executable, "-m", f"bench.{part}", "--json", str(out)]
            if args.quick and part in ("inputs", "model", "precision", "serving"):
                command.append("--quick")
            if args.quick and part == "replay":
                command += ["--events", "300", "--base-events", "128"]
            if args.trained and part in ("inputs", "serving"):
                command += ["--trained", str(args.trained)]
            if part == "serving" and "precision" in report:
                # Serve the precision bench.precision validated, not bench.serving's own guess.
                command += ["--base-archive", ":".join(report["precision"]["chosen"])]
            print(f"\n== bench.{part}: {' '.join(command[1:])}", flush=True)
            _run(command)
            report[part] = json.loads(out.read_text(encoding="utf-8"))
    if args.gpu:
        report["gpu"] = json.loads(args.gpu.read_text(encoding="utf-8"))
    report["machine"]["load_average_at_end"] = os.getloadavg()
    print("\n" + "\n".join(_table(["goal", "target", "this run", "status"], _goal_rows(report))))
    stem = args.stem or datetime.now(UTC).strftime("%Y-%m-%d")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (RESULTS / f"{stem}.md").write_text(markdown(report), encoding="utf-8")
    plots(report, RESULTS / stem)
    print(f"\nwrote {RESULTS / stem}.json, .md, -throughput.png, -latency.png")
    return 0


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {}
    for name in ("torch", "transformers", "kafka", "redis"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "?")
        except ImportError:
            versions[name] = "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_gib, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
        "versions": versions,
    }


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"# aigis benchmarks, {report['date'][:10]}",
        "",
        f"{m['cores']} cores of {m['cpu']}, {m['memory_gib']} GiB, Python {m['python']}, "
        f"load average at start {m['load_average_at_start'][0]:.1f}"
        + (f", at end {m['load_average_at_end'][0]:.1f}. " if "load_average_at_end" in m else ". ")
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + ". Compare rows of one run; the machine drifts between runs.",
        "",
    ]
    lines += ["## Goals", ""]
    lines += _table(["goal", "target", "this run", "status"], _goal_rows(report))
    if "inputs" in report:
        lines += ["## Input pipeline, one core (image bytes to pixel tensor)", ""]
        lines += _table(
            ["images", "pipeline", "items/s"],
            [
                [r["images"], r["pipeline"], f"{r['items_per_s']:.1f}"]
                for r in report["inputs"]["rows"]
            ],
        )
    if "replay" in report:
        lines += ["## Cache-hit replay by micro-batch size (tiny model, exactly-once)", ""]
        replay = report["replay"]
        phases = [("first pass", replay["first_pass"])]
        phases += [
            (f"replay, {r.get('code', 'this code')}, batch {r['batch_size']}", r)
            for r in replay["replays"]
        ]
        lines += _table(
            ["phase", "events/s", "worker CPU ms/event", "broker CPU ms/event", "mean batch"],
            [
                [
                    name,
                    f"{r['events_per_s']:.1f}",
                    f"{r['cpu_ms_per_event']['worker']:.2f}",
                    f"{r['cpu_ms_per_event']['kafka']:.2f}",
                    f"{r['mean_batch_size']:.1f}",
                ]
                for name, r in phases
            ],
        )
        if "base_model" in replay:
            lines += _base_replay(replay["base_model"])
    if "model" in report:
        lines += ["## Model, in process (batch 32, 32-token captions)", ""]
        lines += _table(
            ["preset", "architecture", "phase", "precision", "batch", "items/s"],
            [
                [
                    r["preset"],
                    r["architecture"],
                    r["phase"],
                    r["precision"],
                    r["batch"],
                    f"{r['items_per_s']:.1f}",
                ]
                for r in report["model"]["rows"]
            ],
        )
    if "precision" in report:
        lines += ["## Base model's CPU backends (batch 32, 32-token captions, validated)", ""]
        lines += _table(
            ["backend", "precision", "items/s", "x fp32", "near-edge items", "decisions = fp32"],
            [_precision_row(r) for r in report["precision"]["rows"]],
        )
    if "serving" in report:
        lines += ["## TorchServe", ""]
        lines += _table(
            ["preset", "archive", "client pattern", "items/s", "p50 ms", "p99 ms", "server batch"],
            [
                [
                    p["preset"],
                    p["archive"],
                    p["pattern"],
                    f"{p['items_per_s']:.1f}",
                    f"{p['p50_ms']:.0f}",
                    f"{p['p99_ms']:.0f}",
                    f"{p['mean_server_batch']:.1f}",
                ]
                for p in report["serving"]["serving"]
            ],
        )
        overhead = report["serving"].get("overhead")
        if overhead:
            lines += ["## TorchServe against its handler in process (same server batch)", ""]
            lines += _table(
                ["body", "TorchServe items/s", "handler in process items/s"],
                [
                    [
                        body,
                        f"{overhead['served_items_per_s'][body]:.1f}",
                        f"{overhead['in_process_items_per_s'][body]:.1f}",
                    ]
                    for body in overhead["served_items_per_s"]
                ],
            )
        lines += ["## Precision (in process, smoke test split)", ""]
        lines += _table(
            ["preset", "precision", "items/s", "decisions = fp32", "max p_ai change", "F1 A"],
            [
                [
                    p["preset"],
                    p["precision"],
                    f"{p['items_per_s']:.1f}",
                    f"{100 * p['agreement']:.1f} %",
                    f"{p['max_delta_p']:.4f}",
                    "-" if p["f1_task_a"] is None else f"{p['f1_task_a']:.3f}",
                ]
                for p in report["serving"]["precision"]
            ],
        )
    if "worker" in report:
        w = report["worker"]
        ts = w["torchserve_items_per_s"]
        eo = w["worker_exactly_once"]["events_per_s"]
        alo = w["worker_at_least_once"]["events_per_s"]
        as_json = w.get("worker_exactly_once_json", {}).get("events_per_s", float("nan"))
        latency = w["latency"]
        lines += ["## Worker (tiny model)", ""]
        lines += _table(
            ["phase", "result"],
            [
                ["TorchServe alone (predict_many)", f"{ts:.1f} items/s"],
                ["worker, exactly-once", f"{eo:.1f} events/s = {100 * eo / ts:.0f}% of TorchServe"],
                ["worker, at-least-once", f"{alo:.1f} events/s = {100 * alo / ts:.0f}%"],
                [
                    "worker, exactly-once, JSON body",
                    f"{as_json:.1f} events/s: the compact body is {eo / as_json:.2f}x",
                ],
                ["cache-hit replay", f"{w['cache_hit_replay']['events_per_s']:.1f} events/s"],
                ["cache hits in the scoring phases", scoring_check(w) or "none"],
                [
                    "naive worker",
                    f"{w['naive_events_per_s']:.2f} events/s: worker is "
                    f"{eo / max(w['naive_events_per_s'], 1e-9):.1f}x",
                ],
                [
                    "end-to-end latency",
                    f"p50 {latency['p50_ms']:.0f} ms, p99 {latency['p99_ms']:.0f} ms "
                    f"at {latency['rate_per_s']:.1f} events/s",
                ],
            ],
        )
    if "gpu" in report:
        lines += _gpu_section(report["gpu"])
    return "\n".join(lines) + "\n"


def _gpu_section(gpu: dict[str, Any]) -> list[str]:
    """bench/gpu.sh's figures, measured on a GPU machine (not in this run's machine)."""
    rows = [
        [key.replace("_", " "), f"{figures['items_per_s']:.0f}"]
        for key, figures in gpu.items()
        if isinstance(figures, dict) and "items_per_s" in figures
    ]
    steps = ", ".join(f"{step} {ms:.1f}" for step, ms in gpu.get("steps_ms", {}).items())
    return [
        f"## GPU, JPEG bytes to scores through the handler's steps ({gpu['preset']} on "
        f"{gpu['device']}, {gpu['precision']}, batch {gpu.get('batch', '-')}; bench/gpu.sh, "
        "on another machine)",
        "",
        *_table(["corpus, decoding budget", "items/s"], rows),
        *(
            [f"One JPEG batch, the device synchronised between steps (ms): {steps}.", ""]
            if steps
            else []
        ),
    ]


def _base_replay(base: dict[str, Any]) -> list[str]:
    """The first pass on the base model and its cache-hit replay (bench.replay_base)."""
    model = f"{base['preset']}, {base['backend']} {base['precision']}"
    rows = [
        (f"first pass, {base['events']} images", base["first_pass"]),
        (f"replay, {base['replay_events']} events", base["replay"]),
    ]
    return [
        f"## Cache-hit replay against the first pass, base model ({model}, batch "
        f"{base['batch_size']}, exactly-once)",
        "",
        *_table(
            ["phase", "events/s", "cache hits", "worker CPU ms/event", "broker CPU ms/event"],
            [
                [
                    name,
                    f"{r['events_per_s']:.1f}",
                    f"{r['cache_hits']:.0f} of {r['cache_hits'] + r['cache_misses']:.0f}",
                    f"{r['cpu_ms_per_event']['worker']:.2f}",
                    f"{r['cpu_ms_per_event']['kafka']:.2f}",
                ]
                for name, r in rows
            ],
        ),
        f"The replay runs {base['ratio']:.1f}x the first pass, both in this run.",
        "",
    ]


def _precision_row(row: dict[str, Any]) -> list[Any]:
    agreement = row["agreement"] or {}
    near = agreement.get("near", 0)
    return [
        row["backend"],
        row["precision"] + (" compiled" if row.get("compiled") else ""),
        f"{row['items_per_s']:.1f}",
        f"{row['ratio']:.2f}",
        near if agreement else "-",
        f"{agreement['agree'] / near:.1%}" if near else "-",
    ]


def _goal_rows(report: dict[str, Any]) -> list[list[Any]]:
    return list(markdown_rows(goals(report)))


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def plots(report: dict[str, Any], stem: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "serving" in report:
        fig, ax = plt.subplots(figsize=(7, 4))
        by_pattern: dict[str, list[tuple[int, float]]] = {}
        for p in report["serving"]["serving"]:
            if p["preset"] != "tiny" or not p["archive"].startswith("b"):
                continue
            batch = int(p["archive"][1:].split("-")[0])
            by_pattern.setdefault(p["pattern"], []).append((batch, p["items_per_s"]))
        for pattern, points in sorted(by_pattern.items()):
            points.sort()
            ax.plot([b for b, _ in points], [v for _, v in points], marker="o", label=pattern)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("TorchServe server batch size (tiny model)")
        ax.set_ylabel("items/s")
        ax.set_title("Throughput against server batch size")
        ax.legend()
        fig.tight_layout()
        fig.savefig(f"{stem}-throughput.png", dpi=120)
        plt.close(fig)
    if "worker" in report and report["worker"]["latency"].get("latencies_ms"):
        latency = report["worker"]["latency"]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.hist(latency["latencies_ms"], bins=40)
        for q in ("p50_ms", "p99_ms"):
            ax.axvline(latency[q], linestyle="--", color="black")
            ax.text(latency[q], ax.get_ylim()[1] * 0.9, q[:3], ha="right")
        ax.set_xlabel("end-to-end latency, produced_at to committed verdict (ms)")
        ax.set_ylabel("events")
        ax.set_title(f"Worker latency at {latency['rate_per_s']:.1f} events/s (tiny model)")
        fig.tight_layout()
        fig.savefig(f"{stem}-latency.png", dpi=120)
        plt.close(fig)


def _run(command: list[str]) -> None:
    done = subprocess.run(command, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"`{' '.join(command[1:])}` exited {done.returncode}")


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter points")
    parser.add_argument("--trained", type=Path, help="a trained tiny model for accuracy columns")
    parser.add_argument("--gpu", type=Path, help="the JSON bench/gpu.sh wrote on a GPU machine")
    parser.add_argument(
        "--stem", default="", help="name of the result files [default: today's date]"
    )
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(PARTS)}")
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(main())

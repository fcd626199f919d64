"""``aigis bench``: every benchmark of the project, run from a checkout of the repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from aigis.cli.common import fail

ROOT = Path(__file__).resolve().parents[2]


def register(app: typer.Typer) -> None:
    @app.command(
        help=(
            "Run every benchmark (input pipeline, model in process, TorchServe, the streaming "
            "worker, the cache-hit replay), print the performance goals beside their figures and "
            "write bench/results/<date>.json, a markdown table and PNG plots. Starts Kafka and "
            "Redis when needed; takes 20-40 minutes on 2 cores (--quick: less)."
        )
    )
    def bench(
        quick: bool = typer.Option(False, "--quick", help="Fewer, shorter points."),
        trained: Path | None = typer.Option(
            None, "--trained", help="A trained tiny model, for the accuracy columns."
        ),
        only: str = typer.Option(
            "",
            "--only",
            help="A comma-separated subset of inputs,model,precision,serving,worker,replay.",
        ),
        gpu: Path | None = typer.Option(
            None, "--gpu", help="The JSON bench/gpu.sh wrote on a GPU machine, for its goal."
        ),
        stem: str = typer.Option(
            "", "--stem", help="Name of the result files [default: today's date]."
        ),
    ) -> None:
        if not (ROOT / "bench" / "suite.py").is_file():
            fail("aigis bench: the benchmarks live in the repository; run it from a checkout")
        command = [sys.executable, "-m", "bench.suite", "--only", only]
        if quick:
            command.append("--quick")
        if trained is not None:
            command += ["--trained", str(trained.resolve())]
        if gpu is not None:
            command += ["--gpu", str(gpu.resolve())]
        if stem:
            command += ["--stem", stem]
        raise typer.Exit(subprocess.run(command, cwd=ROOT, check=False).returncode)

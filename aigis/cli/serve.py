"""``aigis export`` and ``aigis serve start | stop | status``."""

from __future__ import annotations

import json
import signal
import threading
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from aigis.cli.common import fail, settings, table_console
from schemas.errors import AigisError

if TYPE_CHECKING:
    from serving.torchserve.server import ServerStatus

serve_app = typer.Typer(
    help=(
        "Start, stop and inspect TorchServe hosting the detector. Ports come from "
        "AIGIS_SERVING__INFERENCE_URL / __MANAGEMENT_URL / __METRICS_URL, files live in "
        "AIGIS_STATE_DIR/torchserve."
    ),
    no_args_is_help=True,
)

_DEFAULTS_NOTE = (
    "Defaults are the fastest measured on a 2-core CPU (serving benchmark, bench/results)."
)


def register(app: typer.Typer) -> None:
    @app.command(
        help=f"Package a trained model directory as a TorchServe archive (.mar). {_DEFAULTS_NOTE}"
    )
    def export(
        model: Path = typer.Option(..., "--model", help="Checkpoint directory (from aigis train)."),
        output: Path = typer.Option(..., "--output", help="Model store directory to write to."),
        version: str | None = typer.Option(
            None, "--version", help="Version to register it as [default: the checkpoint's]."
        ),
        name: str = typer.Option("detector", "--name", help="Model name in TorchServe's URLs."),
        batch_size: int = typer.Option(
            4, "--batch-size", min=1, help="Server batch size (requests handed over at once)."
        ),
        max_batch_delay_ms: int = typer.Option(
            5, "--max-batch-delay-ms", min=0, help="How long a server batch may wait to fill."
        ),
        workers: int = typer.Option(1, "--workers", min=1, help="Worker processes (models)."),
        response_timeout: int = typer.Option(
            120, "--response-timeout", min=1, help="Seconds before a stuck batch's worker restarts."
        ),
        backend: str = typer.Option(
            "auto",
            "--backend",
            help="What runs the encoders on a CPU: onnxruntime, openvino (encoders exported "
            "into the archive) or torch; auto: openvino (bf16) for the fused architecture, else "
            "torch. On a GPU the archive runs on torch.",
        ),
        precision: str = typer.Option(
            "auto",
            "--precision",
            help="auto (fp16 on GPU; on CPU fp32 torch, int8 onnxruntime, bf16 openvino), fp32, "
            "bf16, fp16, int8.",
        ),
        compile: bool = typer.Option(
            False, "--compile", help="torch backend: run the encoders through torch.compile."
        ),
        max_forward_batch: int = typer.Option(
            32, "--max-forward-batch", min=1, help="Most items in one forward pass."
        ),
        threads: int = typer.Option(
            0, "--threads", min=0, help="Torch threads per worker [default 0: cores / workers]."
        ),
        watermark: bool = typer.Option(
            False,
            "--watermark",
            help="Read the SDXL invisible watermark of each image (a second, full-size decode).",
        ),
        force: bool = typer.Option(False, "--force", help="Replace an existing archive."),
    ) -> None:
        from serving.model.backend_choice import default_backend
        from serving.model.config import DetectorConfig
        from serving.torchserve.archive import ExportOptions, export_archive

        settings()
        try:
            if backend == "auto":
                backend = default_backend(DetectorConfig.load(model).architecture)
            options = ExportOptions(
                name=name,
                version=version,
                batch_size=batch_size,
                max_batch_delay_ms=max_batch_delay_ms,
                workers=workers,
                response_timeout_s=response_timeout,
                backend=backend,
                precision=precision,
                compile=compile,
                max_forward_batch=max_forward_batch,
                threads=threads,
                watermark=watermark,
            )
            info = export_archive(model, output, options, force=force)
        except AigisError as exc:
            fail(f"aigis export: {exc}")
        typer.echo(f"wrote {info.path} (model {info.name}, version {info.version})")
        typer.echo(f"serve it with: aigis serve start --model-store {output}")

    @serve_app.command("start", help="Start TorchServe and wait until the models are READY.")
    def start(
        model_store: Path = typer.Option(..., "--model-store", help="Directory of .mar archives."),
        models: list[str] | None = typer.Option(
            None,
            "--models",
            help="Archive file names in the store to load (repeatable) "
            "[default: the newest version of each model].",
        ),
        no_auth: bool = typer.Option(
            False,
            "--no-auth",
            help="Turn TorchServe's token authorisation off. Local development only.",
        ),
        foreground: bool = typer.Option(
            False,
            "--foreground",
            help="Stay in the foreground with TorchServe's log on stdout; Ctrl+C or SIGTERM "
            "stops it (a container's main process).",
        ),
    ) -> None:
        from serving.torchserve.server import TorchServe

        loaded = settings()
        server = TorchServe(loaded)
        try:
            # The store first: a wrong path fails before anything is printed or started.
            server.archives(model_store, models)
        except AigisError as exc:
            fail(f"aigis serve start: {exc}")
        typer.echo(f"starting TorchServe (state dir {loaded.state_dir}); loading models…")
        try:
            archives = server.start(
                model_store, models=models, auth=not no_auth, echo_logs=foreground
            )
        except AigisError as exc:
            fail(f"aigis serve start: {exc}")
        for archive in archives:
            typer.echo(f"  {archive.name} version {archive.version} READY ({archive.path.name})")
        serving = loaded.serving
        typer.echo(f"inference  {serving.inference_url}/predictions/<model>")
        typer.echo(f"management {serving.management_url}")
        typer.echo(f"metrics    {serving.metrics_url}/metrics")
        if no_auth:
            typer.secho("token authorisation is OFF (--no-auth)", fg=typer.colors.YELLOW)
        else:
            typer.echo(f"tokens     {loaded.serving_key_file} (send 'Authorization: Bearer <key>')")
        if not foreground:
            typer.echo("stop it with: aigis serve stop")
            return
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        if not server.wait(stop):
            fail(f"aigis serve start: TorchServe exited on its own; see {server.paths.logs}")
        typer.echo("TorchServe stopped")

    @serve_app.command("stop", help="Stop the TorchServe this state dir started.")
    def stop() -> None:
        from serving.torchserve.server import TorchServe

        try:
            stopped = TorchServe(settings()).stop()
        except (AigisError, OSError) as exc:
            fail(f"aigis serve stop: {exc}")
        typer.echo("TorchServe stopped" if stopped else "TorchServe was not running")

    @serve_app.command(
        "status", help="Show TorchServe's models, versions and workers; exit 1 unless it runs."
    )
    def status(
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        from serving.torchserve.server import TorchServe

        loaded = settings()
        state = TorchServe(loaded).status()
        if as_json:
            typer.echo(json.dumps(_as_dict(state), indent=2))
        elif not state.running:
            typer.echo(f"TorchServe is not running (state dir {loaded.state_dir})")
        else:
            _print(state, loaded.serving.inference_url)
        if not state.running or state.problem:
            raise typer.Exit(1)

    app.add_typer(serve_app, name="serve")


def _as_dict(state: ServerStatus) -> dict[str, object]:
    values = asdict(state)
    values["model_store"] = str(state.model_store) if state.model_store else None
    return values


def _print(state: ServerStatus, inference_url: str) -> None:
    auth = "token authorisation on" if state.auth else "token authorisation OFF"
    typer.echo(f"TorchServe pid {state.pid} at {inference_url}, {auth}")
    typer.echo(f"model store {state.model_store}")
    table = Table()
    for column in ("model", "version", "default", "batch", "delay ms", "workers"):
        table.add_column(column)
    for d in state.models:
        table.add_row(
            d.name,
            d.version,
            "yes" if state.defaults.get(d.name) == d.version else "",
            str(d.batch_size),
            str(d.max_batch_delay_ms),
            ", ".join(worker.status for worker in d.workers) or "none",
        )
    table_console().print(table)
    if state.problem:
        typer.secho(f"models could not be listed: {state.problem}", fg=typer.colors.RED)

"""Build and read TorchServe model archives (``.mar``) of detector checkpoints.

An archive carries the checkpoint directory (under ``checkpoint/``), a ``model-config.yaml`` with
TorchServe's batching and worker settings and the handler's own settings, and a two-line entry
module. It carries no project code: the handler is imported from the ``aigis`` distribution
installed beside TorchServe (the editable install in development, the wheel in a production
image), so one version of the code serves every archive and a fix reaches all of them. The
archive records the aigis version that built it; the handler logs a warning when it differs.

The archive is built by torch-model-archiver in a subprocess: the archiver stages files in
``$TMPDIR/<model name>`` and deletes that directory first, so two exports of the same model name
at once would destroy each other's staging unless each gets its own ``TMPDIR``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Final

import yaml

from serving.client.manifest import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    NAME_PATTERN,
    ArchiveError,
    ArchiveInfo,
    archive_file_name,
    read_manifest,
)
from serving.model.backend_choice import ENCODERS_DIR, check_backend, resolve_precision
from serving.model.config import Architecture, DetectorConfig

__all__ = ["ExportOptions", "aigis_version", "export_archive", "export_random", "options_like"]

ENTRY_MODULE: Final[str] = "aigis_handler.py"

_ENTRY_SOURCE: Final[str] = '''\
"""TorchServe entry point. The handler is imported from the installed aigis distribution."""

from serving.torchserve.handler import handle  # noqa: F401
'''
_ARCHIVE_TIMEOUT_S: Final[float] = 1800.0


@dataclass(frozen=True)
class ExportOptions:
    """How TorchServe batches and runs one archive. Defaults: the best measured on a 2-core CPU
    (the serving benchmark, bench/results/)."""

    name: str = "detector"
    """The model name TorchServe serves it under (``/predictions/<name>``)."""
    version: str | None = None
    """Version it is registered as; default the checkpoint's own version."""
    batch_size: int = 4
    """Most requests TorchServe hands the handler at once. The worker keeps twice this many
    requests in flight (``worker.max_in_flight``, 8), so that the next server batch is already
    queued in TorchServe while the handler runs one."""
    max_batch_delay_ms: int = 5
    """How long TorchServe waits to fill a batch before it sends a smaller one."""
    workers: int = 1
    """Python workers (processes) serving this version; each loads the model once."""
    response_timeout_s: int = 120
    """A batch not answered in this time gets its worker restarted."""
    startup_timeout_s: int = 600
    """How long a worker may take to load the model."""
    backend: str = "torch"
    """What runs the encoders on a CPU: ``torch``, ``onnxruntime`` or ``openvino``
    (serving.model.backend_choice); the last two get the encoders exported into the archive.
    On a GPU the handler runs torch whatever the archive says."""
    precision: str = "auto"
    """``auto`` (fp16 on GPU; on CPU fp32 for torch, int8 for onnxruntime, bf16 for openvino),
    ``fp32``, ``bf16``, ``fp16`` or ``int8``; which backend runs which:
    serving.model.backend_choice."""
    compile: bool = False
    """torch backend: run the encoders through ``torch.compile``."""
    max_forward_batch: int = 32
    """Most items in one forward pass; the items of a server batch are split to fit."""
    max_items_per_request: int = 256
    """Longer item lists are refused with HTTP 413."""
    threads: int = 0
    """Torch threads per worker; 0: the machine's cores divided by ``workers``."""
    watermark: bool = False
    """The handler reads the SDXL invisible watermark of each image (costs a second, full-size
    decode and the DWT-DCT decoder; measured by ``bench/evidence.py``)."""

    def __post_init__(self) -> None:
        for label, value in (("name", self.name), ("version", self.version)):
            if value is not None and not NAME_PATTERN.match(value):
                raise ArchiveError(
                    f"{label} {value!r} cannot be used in TorchServe's URLs; use letters, digits, "
                    "'.', '_' and '-' (at most 64, starting with a letter or digit)"
                )
        positive = {
            "batch_size": self.batch_size,
            "workers": self.workers,
            "response_timeout_s": self.response_timeout_s,
            "startup_timeout_s": self.startup_timeout_s,
            "max_forward_batch": self.max_forward_batch,
            "max_items_per_request": self.max_items_per_request,
        }
        for field_name, number in positive.items():
            if number < 1:
                raise ArchiveError(f"{field_name} must be at least 1, got {number}")
        if self.max_batch_delay_ms < 0 or self.threads < 0:
            raise ArchiveError("max_batch_delay_ms and threads must not be negative")
        try:
            check_backend(self.backend, self.precision)
        except ValueError as exc:
            raise ArchiveError(str(exc)) from None


def export_archive(
    model_dir: Path, store: Path, options: ExportOptions | None = None, *, force: bool = False
) -> ArchiveInfo:
    """Package the checkpoint in ``model_dir`` as ``<store>/<name>-<version>.mar``.

    The checkpoint's config and files are checked first (CheckpointError names what is wrong or
    missing). An existing archive of the same name and version is replaced only with ``force``.
    """
    options = options or ExportOptions()
    config = DetectorConfig.load(model_dir)
    try:
        check_backend(options.backend, options.precision, config.architecture)
    except ValueError as exc:
        raise ArchiveError(str(exc)) from None
    version = options.version or config.version
    resolved = ExportOptions(**{**asdict(options), "version": version})
    store.mkdir(parents=True, exist_ok=True)
    target = store / archive_file_name(resolved.name, version)
    if target.exists() and not force:
        raise ArchiveError(
            f"{target} exists; pass --force to replace it or choose another --version"
        )
    # Staging sits inside the store so the final rename is atomic and never crosses filesystems.
    with tempfile.TemporaryDirectory(prefix=".export-", dir=store) as staging_dir:
        staging = Path(staging_dir)
        files = staging / "files"
        _link_checkpoint(model_dir, files / CHECKPOINT_DIR)
        if resolved.backend != "torch":
            _export_encoders(model_dir, files / ENCODERS_DIR, resolved)
        entry = staging / ENTRY_MODULE
        entry.write_text(_ENTRY_SOURCE, encoding="utf-8")
        config_file = staging / CONFIG_FILE
        config_file.write_text(_model_config(resolved, config), encoding="utf-8")
        output = staging / "out"
        output.mkdir()
        _run_archiver(
            [
                "--model-name",
                resolved.name,
                "--version",
                version,
                "--handler",
                str(entry),
                "--extra-files",
                str(files),
                "--config-file",
                str(config_file),
                "--export-path",
                str(output),
            ],
            tmp=staging,
        )
        os.replace(output / f"{resolved.name}.mar", target)
    return read_manifest(target)


def export_random(
    store: Path,
    options: ExportOptions | None = None,
    *,
    preset: str = "tiny",
    architecture: Architecture = "fused",
    force: bool = False,
) -> ArchiveInfo:
    """Export a randomly initialised detector of ``preset``: for tests, demos and benchmarks.

    The checkpoint's name is ``<preset>-<architecture>`` and its version ``options.version``
    (default "1").
    """
    # Imported here: building a model needs torch and transformers.
    from serving.model.checkpoint import save_checkpoint
    from serving.model.presets import build_preset

    options = options or ExportOptions(version="1")
    version = options.version or "1"
    built = build_preset(
        preset,
        architecture,
        name=f"{preset}-{architecture}",
        version=version,
    )
    with tempfile.TemporaryDirectory(prefix=".random-", dir=_mkdir(store)) as scratch:
        directory = save_checkpoint(
            built.model, built.tokenizer, built.image_processor, built.config, Path(scratch)
        )
        return export_archive(
            directory, store, ExportOptions(**{**asdict(options), "version": version}), force=force
        )


def _mkdir(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _link_checkpoint(model_dir: Path, target: Path) -> None:
    """Stage the files serving needs, and only those (a training run's directory holds more).

    Links, not copies: the archiver copies through them, so large weights are copied once.
    """
    # Imported here: it pulls in torch, which reading archives does not need.
    from serving.model.checkpoint import checkpoint_files

    target.mkdir(parents=True)
    for source in checkpoint_files(model_dir):
        (target / source.name).symlink_to(source.resolve())


def _export_encoders(model_dir: Path, target: Path, options: ExportOptions) -> None:
    """The checkpoint's encoders as ONNX graphs at the precision the archive runs on a CPU."""
    # Imported here: exporting needs torch, onnx and onnxruntime, which reading archives does not.
    from serving.model.backends import export_encoders
    from serving.model.checkpoint import load_checkpoint

    precision = resolve_precision(options.backend, options.precision, "cpu")
    export_encoders(
        load_checkpoint(model_dir).model, target, precision=precision, backend=options.backend
    )


def _model_config(options: ExportOptions, config: DetectorConfig) -> str:
    document = {
        "minWorkers": options.workers,
        "maxWorkers": options.workers,
        "batchSize": options.batch_size,
        "maxBatchDelay": options.max_batch_delay_ms,
        "responseTimeout": options.response_timeout_s,
        "startupTimeout": options.startup_timeout_s,
        "handler": {
            "checkpoint": CHECKPOINT_DIR,
            "backend": options.backend,
            "precision": options.precision,
            "compile": options.compile,
            "max_forward_batch": options.max_forward_batch,
            "max_items_per_request": options.max_items_per_request,
            "threads": options.threads,
            "watermark": options.watermark,
            "architecture": config.architecture,
            "aigis_version": aigis_version(),
        },
    }
    return yaml.safe_dump(document, sort_keys=False)


def aigis_version() -> str:
    """The installed aigis distribution's version ("unknown" when run from a bare source tree)."""
    try:
        return package_version("aigis")
    except PackageNotFoundError:
        return "unknown"


def _run_archiver(arguments: list[str], *, tmp: Path) -> None:
    # `python -m model_archiver.model_packaging` would warn (its package imports that module).
    entry = "from model_archiver.model_packaging import generate_model_archive as g; g()"
    command = [sys.executable, "-c", entry, *arguments]
    env = {**os.environ, "TMPDIR": str(tmp)}
    try:
        subprocess.run(
            command,
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=_ARCHIVE_TIMEOUT_S,
        )
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or exc.stdout or "").strip()[-2000:]
        raise ArchiveError(f"torch-model-archiver failed (exit {exc.returncode}): {tail}") from None
    except subprocess.TimeoutExpired:
        raise ArchiveError(
            f"torch-model-archiver did not finish in {_ARCHIVE_TIMEOUT_S:.0f} s"
        ) from None


def options_like(archive_path: str | Path | None, name: str, version: str) -> ExportOptions:
    """Options for version ``version`` of model ``name`` with the serving settings (batching,
    workers, backend, precision, watermark reading) of the archive at ``archive_path``; the
    defaults where it has none or cannot be read."""
    base = ExportOptions(name=name, version=version)
    if not archive_path:
        return base
    try:
        with zipfile.ZipFile(archive_path) as archive:
            config = yaml.safe_load(archive.read(CONFIG_FILE)) or {}
    except (OSError, KeyError, zipfile.BadZipFile, yaml.YAMLError):
        return base
    handler = config.get("handler") or {}
    return ExportOptions(
        name=base.name,
        version=version,
        batch_size=int(config.get("batchSize", base.batch_size)),
        max_batch_delay_ms=int(config.get("maxBatchDelay", base.max_batch_delay_ms)),
        workers=int(config.get("minWorkers", base.workers)),
        response_timeout_s=int(config.get("responseTimeout", base.response_timeout_s)),
        startup_timeout_s=int(config.get("startupTimeout", base.startup_timeout_s)),
        backend=str(handler.get("backend", base.backend)),
        precision=str(handler.get("precision", base.precision)),
        compile=bool(handler.get("compile", base.compile)),
        max_forward_batch=int(handler.get("max_forward_batch", base.max_forward_batch)),
        max_items_per_request=int(handler.get("max_items_per_request", base.max_items_per_request)),
        threads=int(handler.get("threads", base.threads)),
        watermark=bool(handler.get("watermark", base.watermark)),
    )

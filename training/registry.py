"""The model registry: every model version, where it came from, and what has been in service.

A directory (``settings.registry_dir``)::

    versions/<version>.json     one ModelVersion per version: parent, data snapshot and counts,
                                metrics of candidate and champion, gate decision, files, times
    events/<ms>-<id>.json       one ServiceEvent per change of the version in service
    archives/<name>-<v>.mar     archives of versions that were promoted or registered
    checkpoints/<version>/      their checkpoint directories (what the next cycle fine-tunes)
    .lock                       held while a cycle, promotion or rollback runs

Every file is written whole (temporary name, then rename). The version in service is found by
replaying the events: ``register``, ``promote`` and ``set-default`` put a version in service on
top of the previous one, ``rollback`` returns to the one below. Torch-free.

Versions and model names become file names here, so every method that takes one checks it with
:func:`check_id` before it builds a path: no version can make the registry read, write or
delete outside its directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.errors import AigisError
from serving.client.manifest import NAME_PATTERN
from training.gate import GateDecision
from training.labelstore.fs import StoreFS

VERSIONS: Final[str] = "versions"
EVENTS: Final[str] = "events"
ARCHIVES: Final[str] = "archives"
CHECKPOINTS: Final[str] = "checkpoints"

Status = Literal["registered", "promoted", "rejected"]
Action = Literal["register", "promote", "set-default", "rollback"]


class RegistryError(AigisError):
    """The registry cannot answer or record what was asked; the message says what to do."""


def _now() -> datetime:
    return datetime.now(UTC)


class DataLineage(BaseModel):
    """What a retrained version learned from and was judged on."""

    model_config = ConfigDict(frozen=True)

    base: str
    """The base training data spec."""
    holdout: str
    """The spec whose test split (plus the store's human decisions) is the gold hold-out."""
    store_url: str
    snapshot_id: str
    """Pinned label-store snapshot the cycle read (``LabelStore.open_snapshot``)."""
    counts: dict[str, int]
    """Items per source: base train, pseudo-labels at each selection step, hold-out sizes."""


class ModelVersion(BaseModel):
    """One version of the model, as the registry records it."""

    model_config = ConfigDict(frozen=True)

    version: str
    name: str
    """The name TorchServe serves it under."""
    status: Status
    """``registered`` by hand, or the gate's ``promoted`` / ``rejected``."""
    parent: str | None = None
    """The version it was fine-tuned from (the champion of its cycle)."""
    created_at: datetime = Field(default_factory=_now)
    checkpoint: str | None = None
    archive: str | None = None
    data: DataLineage | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    """Its metrics on the cycle's gold hold-out, flattened (``task_a.f1``)."""
    champion_metrics: dict[str, float] = Field(default_factory=dict)
    """The parent's metrics on the same hold-out."""
    gate: GateDecision | None = None
    train_seconds: float | None = None


class ServiceEvent(BaseModel):
    """A change of the version in service."""

    model_config = ConfigDict(frozen=True)

    action: Action
    version: str
    """The version in service after the event."""
    previous: str | None
    namespace: str
    """What the cache namespace key was set to (before TorchServe's default was switched)."""
    at: datetime = Field(default_factory=_now)
    note: str | None = None


class Registry:
    """Read and write one registry directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._fs = StoreFS(str(root))

    @property
    def archives_dir(self) -> Path:
        return self.root / ARCHIVES

    def checkpoint_dir(self, version: str) -> Path:
        return self.root / CHECKPOINTS / check_id(version)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the registry's lock; raises RegistryError at once when another process holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RegistryError(
                    f"another retrain, promotion or rollback is running on {self.root}; wait for "
                    "it to finish"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- versions ------------------------------------------------------------------------------

    def versions(self) -> list[ModelVersion]:
        """Every recorded version, oldest first."""
        found = [self._read_version(name) for name in self._fs.listdir(VERSIONS)]
        return sorted(found, key=lambda v: v.created_at)

    def get(self, version: str) -> ModelVersion:
        check_id(version)
        if not self._fs.exists(f"{VERSIONS}/{version}.json"):
            known = ", ".join(v.version for v in self.versions()) or "none"
            raise RegistryError(
                f"version {version!r} is not in the registry {self.root} (known: {known}); "
                "add an archive with `aigis model register`"
            )
        return self._read_version(f"{version}.json")

    def record(self, version: ModelVersion, *, replace: bool = False) -> None:
        """Write ``version``; refuses to overwrite a recorded version unless ``replace``."""
        check_id(version.version)
        check_id(version.name, "model name")
        relative = f"{VERSIONS}/{version.version}.json"
        if not replace and self._fs.exists(relative):
            raise RegistryError(
                f"version {version.version} is already in the registry {self.root}; "
                "give the new model another version"
            )
        self._fs.write_atomic(relative, version.model_dump_json(indent=1).encode())

    def add_archive(self, archive: Path, *, parent: str | None = None) -> ModelVersion:
        """Record a TorchServe archive built elsewhere as version ``registered``.

        The archive is copied into ``archives/`` and its checkpoint extracted into
        ``checkpoints/<version>/`` (what a retraining cycle fine-tunes). Adding the same archive
        again returns the existing record. Raises RegistryError for a file that is not an
        archive or a version already recorded from another archive.
        """
        from serving.client.manifest import ArchiveError, archive_file_name, read_manifest

        try:
            info = read_manifest(archive)
        except ArchiveError as exc:
            raise RegistryError(str(exc)) from None
        check_id(info.version)
        check_id(info.name, "model name")
        if parent is not None:
            check_id(parent)
        kept = self.archives_dir / archive_file_name(info.name, info.version)
        if self._fs.exists(f"{VERSIONS}/{info.version}.json"):
            existing = self.get(info.version)
            if existing.archive and Path(existing.archive).is_file() and _same_file(kept, archive):
                return existing
            raise RegistryError(
                f"version {info.version} is already in the registry {self.root} from another "
                "archive; export this model with another --version"
            )
        checkpoint = self.checkpoint_dir(info.version)
        _extract_checkpoint(archive, checkpoint)
        if kept.resolve() != archive.resolve():
            kept.parent.mkdir(parents=True, exist_ok=True)
            temp = kept.with_name(f".{kept.name}.tmp")
            shutil.copyfile(archive, temp)
            temp.replace(kept)
        record = ModelVersion(
            version=info.version,
            name=info.name,
            status="registered",
            parent=parent,
            checkpoint=str(checkpoint),
            archive=str(kept),
        )
        self.record(record)
        return record

    def next_version(self, taken: tuple[str, ...] = ()) -> str:
        """One more than the largest integer version recorded here or in ``taken``."""
        numbers = [int(v) for v in (*(m.version for m in self.versions()), *taken) if v.isdigit()]
        return str(max(numbers, default=0) + 1)

    def _read_version(self, name: str) -> ModelVersion:
        try:
            return ModelVersion.model_validate_json(self._fs.read(f"{VERSIONS}/{name}"))
        except ValidationError as exc:
            raise RegistryError(
                f"{self.root / VERSIONS / name} is not a valid record: {exc}"
            ) from None

    # -- service history -----------------------------------------------------------------------

    def events(self) -> list[ServiceEvent]:
        """Every service event, oldest first."""
        events = []
        for name in self._fs.listdir(EVENTS):
            try:
                events.append(ServiceEvent.model_validate_json(self._fs.read(f"{EVENTS}/{name}")))
            except ValidationError as exc:
                raise RegistryError(
                    f"{self.root / EVENTS / name} is not a valid event: {exc}"
                ) from None
        return events

    def log_event(self, event: ServiceEvent) -> None:
        check_id(event.version)
        stamp = int(event.at.timestamp() * 1000)
        name = f"{EVENTS}/{stamp:013d}-{uuid.uuid4().hex[:8]}.json"
        self._fs.write_atomic(name, event.model_dump_json(indent=1).encode())

    def service_stack(self) -> list[str]:
        """Versions in service, oldest at the bottom; the last is in service now."""
        stack: list[str] = []
        for event in self.events():
            if event.action == "rollback":
                if stack:
                    stack.pop()
                if not stack or stack[-1] != event.version:
                    stack.append(event.version)
            elif not stack or stack[-1] != event.version:
                stack.append(event.version)
        return stack

    def in_service(self) -> ModelVersion | None:
        """The version in service according to the registry, or None before the first one."""
        stack = self.service_stack()
        return self.get(stack[-1]) if stack else None

    def rollback_target(self) -> str | None:
        """The version a rollback would restore: the one in service before the current one."""
        stack = self.service_stack()
        return stack[-2] if len(stack) >= 2 else None


def read_lineage(registry_dir: Path) -> list[ModelVersion]:
    """Every version recorded in ``registry_dir``, oldest first (empty for a new registry)."""
    return Registry(registry_dir).versions()


def _same_file(a: Path, b: Path) -> bool:
    return a.is_file() and b.is_file() and _digest(a) == _digest(b)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _extract_checkpoint(archive: Path, target: Path) -> None:
    """Unpack the archive's ``checkpoint/`` directory into ``target`` (replacing it whole)."""
    from serving.client.manifest import CHECKPOINT_DIR

    prefix = f"{CHECKPOINT_DIR}/"
    staging = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with zipfile.ZipFile(archive) as zipped:
        members = [m for m in zipped.namelist() if m.startswith(prefix) and not m.endswith("/")]
        if not members:
            raise RegistryError(
                f"{archive} holds no {prefix} directory; build it with `aigis export`"
            )
        for member in members:
            name = member.removeprefix(prefix)
            if "/" in name or name in ("", ".", ".."):
                continue  # the checkpoint is flat; anything else is not ours to unpack
            (staging / name).write_bytes(zipped.read(member))
    shutil.rmtree(target, ignore_errors=True)
    staging.replace(target)


def check_id(value: str, what: str = "version") -> str:
    """``value`` when it is a valid model version or name, else RegistryError.

    Valid is :data:`~serving.client.manifest.NAME_PATTERN`: 1 to 64 letters, digits, '.', '_'
    and '-', starting with a letter or digit; so never empty, ``..``, absolute or with a slash.
    """
    if not NAME_PATTERN.match(value):
        shown = repr(value[:64]) + ("..." if len(value) > 64 else "")
        raise RegistryError(
            f"{what} {shown} cannot be used: model names and versions are 1 to 64 letters, "
            "digits, '.', '_' and '-', starting with a letter or digit"
        )
    return value

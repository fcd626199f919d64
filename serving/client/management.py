"""TorchServe's management API: which model versions are registered, served, and the default.

All knowledge of that API's paths and JSON lives here (``aigis model`` and ``aigis serve`` build
on it). Connection problems raise :class:`~serving.client.http.ServingUnavailable`; refusals raise a
:class:`ManagementError` subclass that says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from schemas.errors import AigisError
from schemas.settings import ServingSettings
from serving.client.manifest import ArchiveInfo, read_manifest
from serving.client.transport import (
    MANAGEMENT_RETRY_STATUSES,
    Transport,
    TransportOwner,
    error_message,
)

__all__ = [
    "ManagementClient",
    "ManagementError",
    "ModelDescription",
    "ModelNotFoundError",
    "Registered",
    "VersionConflictError",
    "VersionInfo",
    "WorkerInfo",
]


class ManagementError(AigisError):
    """TorchServe refused a management request; ``status`` is its HTTP status."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        super().__init__(detail)


class ModelNotFoundError(ManagementError):
    """No such model, or no such version of it, is registered."""


class VersionConflictError(ManagementError):
    """The version is already registered, or is the default and cannot be removed."""


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    status: str
    """``READY``, ``UNLOADING``, ``UNREGISTERED`` ... as TorchServe reports it."""
    pid: int | None


@dataclass(frozen=True)
class ModelDescription:
    """One registered version of a model, as TorchServe describes it."""

    name: str
    version: str
    url: str
    """The archive it was registered from."""
    batch_size: int
    max_batch_delay_ms: int
    min_workers: int
    max_workers: int
    workers: tuple[WorkerInfo, ...]
    customized: dict[str, Any] | None
    """What the handler says about itself (``customized=True`` only)."""

    @property
    def workers_ready(self) -> int:
        return sum(worker.status == "READY" for worker in self.workers)


@dataclass(frozen=True)
class VersionInfo:
    version: str
    is_default: bool
    workers_ready: int


@dataclass(frozen=True)
class Registered:
    name: str
    version: str


class ManagementClient(TransportOwner):
    """Typed access to TorchServe's management API. Thread-safe; a context manager."""

    def __init__(self, settings: ServingSettings, *, key_file: Path | None = None) -> None:
        self._transport = Transport(settings, key_file=key_file)
        # Registering loads a model and scaling starts workers: both may take minutes.
        self._slow_timeout = max(settings.timeout_s, settings.start_timeout_s)

    def list_models(self) -> list[str]:
        """Names of the registered models."""
        names: list[str] = []
        params: dict[str, str | int] = {"limit": 100}
        while True:
            body = self._json("GET", "models", params=params)
            names.extend(str(entry["modelName"]) for entry in body.get("models", []))
            token = body.get("nextPageToken")
            if not token:
                return names
            params = {"limit": 100, "next_page_token": str(token)}

    def describe(
        self, name: str, version: str | None = None, *, customized: bool = False
    ) -> list[ModelDescription]:
        """The given version, or the default one when ``version`` is None."""
        path = f"models/{name}" if version is None else f"models/{name}/{version}"
        params: dict[str, str | int] = {"customized": "true"} if customized else {}
        return [_description(entry) for entry in self._json("GET", path, params=params)]

    def describe_all(self, name: str) -> list[ModelDescription]:
        """Every registered version of ``name``."""
        return [_description(entry) for entry in self._json("GET", f"models/{name}/all")]

    def default_version(self, name: str) -> str:
        return self.describe(name)[0].version

    def versions(self, name: str) -> list[VersionInfo]:
        """Every registered version of ``name``, in registration order, and which is the default."""
        default = self.default_version(name)
        return [
            VersionInfo(d.version, d.version == default, d.workers_ready)
            for d in self.describe_all(name)
        ]

    def register(
        self, mar_url_or_path: str | Path, *, initial_workers: int = 1, synchronous: bool = True
    ) -> Registered:
        """Register an archive: a local path, a file name in the model store, or an http(s) URL.

        TorchServe copies a local archive into its model store; when the store holds a file of
        that name already (the archive lies in the store, or was registered before), that file
        is registered. With ``synchronous`` it returns once ``initial_workers`` workers have
        loaded the model. Raises VersionConflictError when that name and version are registered.
        """
        url, archive = _archive_url(mar_url_or_path)
        try:
            registered = self._register(url, initial_workers, synchronous)
        except ManagementError as exc:
            if archive is None or "already exists" not in str(exc):
                raise
            registered = self._register(archive.path.name, initial_workers, synchronous)
            if registered != Registered(archive.name, archive.version):
                self.unregister(registered.name, registered.version)
                raise ManagementError(
                    409,
                    f"the model store holds another archive named {archive.path.name} "
                    f"({registered.name} version {registered.version}); export this one with "
                    "another --version",
                ) from None
        return Registered(archive.name, archive.version) if archive is not None else registered

    def _register(self, url: str, initial_workers: int, synchronous: bool) -> Registered:
        body = self._json(
            "POST",
            "models",
            params={
                "url": url,
                "initial_workers": initial_workers,
                "synchronous": str(synchronous).lower(),
            },
            timeout=self._slow_timeout,
        )
        return _registered_from_status(str(body.get("status", "")))

    def set_default(self, name: str, version: str) -> None:
        """Serve ``version`` at ``/predictions/<name>`` from now on."""
        self._json("PUT", f"models/{name}/{version}/set-default")

    def unregister(self, name: str, version: str) -> None:
        """Remove a version and stop its workers. The default version cannot be removed."""
        self._json("DELETE", f"models/{name}/{version}", timeout=self._slow_timeout)

    def scale(
        self,
        name: str,
        version: str | None = None,
        *,
        min_workers: int,
        max_workers: int | None = None,
        synchronous: bool = True,
    ) -> None:
        """Set how many workers serve a version (the default one when ``version`` is None)."""
        path = f"models/{name}" if version is None else f"models/{name}/{version}"
        self._json(
            "PUT",
            path,
            params={
                "min_worker": min_workers,
                "max_worker": max_workers if max_workers is not None else min_workers,
                "synchronous": str(synchronous).lower(),
            },
            timeout=self._slow_timeout,
        )

    def _json(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str | int] | None = None,
        timeout: float | None = None,
    ) -> Any:
        response = self._transport.send(
            method,
            "management",
            path,
            params=params,
            timeout=timeout,
            retry_statuses=MANAGEMENT_RETRY_STATUSES,
        )
        if not response.is_success:
            raise _management_error(response)
        try:
            return response.json()
        except ValueError:
            return {"status": response.text}


def _management_error(response: httpx.Response) -> ManagementError:
    status = response.status_code
    message = error_message(response)
    what = f"{response.request.method} {response.request.url.path}"
    if status == httpx.codes.NOT_FOUND:
        return ModelNotFoundError(
            status, f"{message} ({what}); `aigis model list` shows what is registered"
        )
    if status == httpx.codes.CONFLICT:
        return VersionConflictError(
            status, f"{message}; export the model with another --version to register it again"
        )
    if status == httpx.codes.FORBIDDEN and "default" in message.lower():
        return VersionConflictError(
            status, f"{message}; make another version the default first (set-default)"
        )
    if status == httpx.codes.METHOD_NOT_ALLOWED:
        return ManagementError(
            status,
            f"{message} ({what}): TorchServe's model API is off; start it with `aigis serve "
            "start`, whose configuration turns it on (enable_model_api=true)",
        )
    return ManagementError(status, f"TorchServe refused {what} (HTTP {status}: {message})")


def _archive_url(mar_url_or_path: str | Path) -> tuple[str, ArchiveInfo | None]:
    """TorchServe's ``url`` parameter for an archive and, for a local file, its manifest."""
    text = str(mar_url_or_path)
    if text.startswith(("http://", "https://")):
        return text, None
    path = Path(text.removeprefix("file://"))
    if path.is_file():
        return path.resolve().as_uri(), read_manifest(path)
    if "/" not in text:
        return text, None  # a file name inside the server's model store
    raise ModelNotFoundError(
        404, f"no model archive at {path}; build one with `aigis export` or give its URL"
    )


def _registered_from_status(status: str) -> Registered:
    # TorchServe says: Model "detector" Version: 2 registered with 1 initial workers
    try:
        name = status.split('"')[1]
        version = status.split("Version:")[1].split()[0]
    except IndexError:
        return Registered(name="", version="")
    return Registered(name, version)


def _description(entry: dict[str, Any]) -> ModelDescription:
    customized = entry.get("customizedMetadata")
    return ModelDescription(
        name=str(entry["modelName"]),
        version=str(entry["modelVersion"]),
        url=str(entry.get("modelUrl", "")),
        batch_size=int(entry.get("batchSize", 1)),
        max_batch_delay_ms=int(entry.get("maxBatchDelay", 0)),
        min_workers=int(entry.get("minWorkers", 0)),
        max_workers=int(entry.get("maxWorkers", 0)),
        workers=tuple(
            WorkerInfo(
                id=str(worker.get("id", "")),
                status=str(worker.get("status", "")),
                pid=int(worker["pid"]) if worker.get("pid") not in (None, "") else None,
            )
            for worker in entry.get("workers", [])
        ),
        customized=customized if isinstance(customized, dict) else None,
    )

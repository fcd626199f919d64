"""Read TorchServe model archives (``.mar``): name, version and handler settings.

Torch-free, so the management client, the registry and server control read archives on hosts
without the model's dependencies; building archives is :mod:`serving.torchserve.archive`.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from schemas.errors import AigisError

CHECKPOINT_DIR: Final[str] = "checkpoint"
"""Where the checkpoint lies inside an extracted archive."""
CONFIG_FILE: Final[str] = "model-config.yaml"
NAME_PATTERN: Final[re.Pattern[str]] = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
"""What model names and versions may look like: they become parts of URLs and file names.

Anchored with ``\\A`` and ``\\Z`` so that ``match`` refuses a trailing newline too."""


class ArchiveError(AigisError):
    """An archive cannot be built or read."""


@dataclass(frozen=True)
class ArchiveInfo:
    """Identity of an archive, read from its manifest."""

    path: Path
    name: str
    version: str
    handler: dict[str, Any]
    """The handler section of its model-config.yaml."""


def archive_file_name(name: str, version: str) -> str:
    return f"{name}-{version}.mar"


def read_manifest(path: Path) -> ArchiveInfo:
    """Name, version and handler settings of the archive at ``path``."""
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
            model = manifest["model"]
            handler: dict[str, Any] = {}
            config_name = model.get("configFile")
            if config_name:
                loaded = yaml.safe_load(archive.read(config_name)) or {}
                handler = dict(loaded.get("handler") or {})
            return ArchiveInfo(
                path=path,
                name=str(model["modelName"]),
                version=str(model.get("modelVersion", "1.0")),
                handler=handler,
            )
    except FileNotFoundError:
        raise ArchiveError(f"no model archive at {path}; build one with `aigis export`") from None
    except (zipfile.BadZipFile, KeyError, ValueError, yaml.YAMLError) as exc:
        raise ArchiveError(
            f"{path} is not a TorchServe model archive ({type(exc).__name__}: {exc}); "
            "build one with `aigis export`"
        ) from None


def newest_archives(store: Path) -> list[ArchiveInfo]:
    """For each model name in ``store``, the archive with the highest version."""
    newest: dict[str, ArchiveInfo] = {}
    for path in sorted(store.glob("*.mar")):
        info = read_manifest(path)
        current = newest.get(info.name)
        if current is None or _version_key(info.version) > _version_key(current.version):
            newest[info.name] = info
    return [newest[name] for name in sorted(newest)]


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    # "10" sorts after "9", and "1.10" after "1.9": numbers compare as numbers.
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[._-]", version)
    )

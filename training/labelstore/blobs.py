"""Image bytes kept in the store: content-addressed blobs, and which ones no record needs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from training.labelstore.fs import StoreFS

BLOBS: Final[str] = "blobs"


def blob_path(sha256: str) -> str:
    """Where the bytes of the image ``sha256`` live, relative to the store root."""
    return f"{BLOBS}/{sha256[:2]}/{sha256}"


def unreferenced_blobs(fs: StoreFS, referenced: set[str], cutoff: float) -> list[str]:
    """Files under ``blobs/`` not in ``referenced`` and last written before ``cutoff``.

    ``cutoff`` is a POSIX time. A blob written since is kept: the record that will name it may
    not be committed yet. A file whose filesystem does not tell its age is kept too.
    """
    stale = []
    for relative, info in sorted(fs.find(BLOBS).items()):
        written = _written_at(info)
        if relative not in referenced and written is not None and written < cutoff:
            stale.append(relative)
    return stale


def _written_at(info: dict[str, Any]) -> float | None:
    # Local files report mtime, object stores LastModified, fsspec's memory filesystem created.
    for key in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
    return None

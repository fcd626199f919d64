"""The few filesystem operations the store needs, on a local directory or any fsspec URL.

Atomicity is what the store's crash safety rests on: a local file is written under a temporary
name, synced and renamed into place; on an object store (s3, gcs, memory) a single PUT already
makes the object appear whole or not at all.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import uuid
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem


class StoreFS:
    """A filesystem rooted at the store's URL; every path given to it is relative to the root."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url
        fs, root = url_to_fs(url, **(storage_options or {}))
        self.fs: AbstractFileSystem = fs
        self.root: str = root.rstrip("/") or "/"
        self.local = isinstance(fs, LocalFileSystem)

    def path(self, relative: str) -> str:
        return posixpath.join(self.root, relative)

    def write_atomic(self, relative: str, data: bytes) -> None:
        """Make ``relative`` hold ``data``; a reader sees the old state or the whole new file."""
        target = self.path(relative)
        self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        if not self.local:
            self.fs.pipe_file(target, data)
            return
        temp = posixpath.join(
            posixpath.dirname(target), f".{posixpath.basename(target)}.{uuid.uuid4().hex}.tmp"
        )
        try:
            with open(temp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise
        _fsync_dir(posixpath.dirname(target))

    def read(self, relative: str) -> bytes:
        data: bytes = self.fs.cat_file(self.path(relative))
        return data

    def exists(self, relative: str) -> bool:
        return bool(self.fs.exists(self.path(relative)))

    def listdir(self, relative: str) -> list[str]:
        """Names (not paths) in a directory; empty when it does not exist. Temp files excluded."""
        try:
            entries = self.fs.ls(self.path(relative), detail=False)
        except FileNotFoundError:
            return []
        names = (posixpath.basename(str(entry).rstrip("/")) for entry in entries)
        return sorted(name for name in names if not name.startswith("."))

    def find(self, relative: str) -> dict[str, dict[str, Any]]:
        """Every file below a directory, by path relative to the root, with fsspec's info."""
        try:
            found = self.fs.find(self.path(relative), detail=True)
        except FileNotFoundError:
            return {}
        prefix = self.root.strip("/")
        prefix = f"{prefix}/" if prefix else ""
        return {
            str(path).lstrip("/").removeprefix(prefix): info
            for path, info in found.items()
            if str(path).lstrip("/").startswith(prefix)
        }

    def touch(self, relative: str) -> bool:
        """Mark an existing local file as written now; False when it is missing or not local."""
        if not self.local:
            return False
        try:
            os.utime(self.path(relative))
        except FileNotFoundError:
            return False
        return True

    def remove(self, relative: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(relative))


def _fsync_dir(directory: str) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Loading images from local files under the file roots and from admitted s3 buckets.

Paths and buckets arrive already admitted by :class:`~worker.fetch.policy.FetchPolicy`.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from worker.fetch.errors import FetchError, not_allowed, timed_out, too_large, unreachable
from worker.fetch.policy import S3Object

_CHUNK = 64 * 1024
_S3_BLOCK = 1024 * 1024

# O_NONBLOCK: opening a FIFO (or a device) that replaced the checked file never waits for a
# writer. O_NOFOLLOW: a symlink swapped in for the checked file is not followed.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC


def read_file(path: Path, max_bytes: int, deadline: float) -> bytes:
    """The bytes of the regular file ``path``; anything else (a directory, FIFO, socket or
    device) is refused before it is opened, and checked again on what was opened."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            raise not_allowed("not a regular file")
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise unreachable(f"open: {_errno_name(exc)}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise not_allowed("not a regular file")
        return read_bounded(lambda n: os.read(fd, n), max_bytes, deadline)
    except OSError as exc:
        raise unreachable(f"read: {_errno_name(exc)}") from None
    finally:
        os.close(fd)


def read_s3(obj: S3Object, max_bytes: int, deadline: float, timeout_s: float) -> bytes:
    """The bytes of ``obj``, read with this process's credentials through fsspec (the ``s3``
    extra). Each network operation is bounded by ``timeout_s`` and the deadline is checked
    between blocks."""
    try:
        import fsspec  # only s3 URIs need it, and it loads s3fs and botocore lazily

        fs = fsspec.filesystem(
            "s3",
            config_kwargs={
                "connect_timeout": timeout_s,
                "read_timeout": timeout_s,
                "retries": {"total_max_attempts": 1},
            },
        )
        with fs.open(f"{obj.bucket}/{obj.key}", "rb", block_size=_S3_BLOCK) as f:
            return read_bounded(f.read, max_bytes, deadline)
    except FetchError:
        raise
    except ImportError:
        raise unreachable("s3fs is not installed: install aigis[s3] on this host") from None
    except Exception as exc:  # s3fs and botocore raise many types of their own, not only OSError
        raise unreachable(f"s3: {type(exc).__name__}") from None


def read_bounded(read: Callable[[int], bytes], max_bytes: int, deadline: float) -> bytes:
    """Read until end of file, at most ``max_bytes``, checking the deadline before each read."""
    data = bytearray()
    while True:
        if time.monotonic() > deadline:
            raise timed_out("read")
        chunk = read(min(_CHUNK, max_bytes + 1 - len(data)))
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > max_bytes:
            raise too_large(max_bytes)


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)

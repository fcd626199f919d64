"""Errors of the local development stack."""

from __future__ import annotations

from pathlib import Path

from schemas.errors import AigisError


class DevStackError(AigisError):
    """A local service could not be installed, started, checked or stopped.

    ``log`` names the file that explains it, when there is one; ``str(err)`` already quotes its
    last lines.
    """

    def __init__(self, message: str, log: Path | None = None) -> None:
        self.log = log
        super().__init__(message)

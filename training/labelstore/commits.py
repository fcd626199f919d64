"""The store's commit log: manifests of commits and pinned snapshots, and which are live."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from training.labelstore.records import FORMAT_VERSION


@dataclass(frozen=True)
class Commit:
    """One manifest of the commit log."""

    name: str
    kind: str
    """``append`` (new records) or ``compact`` (a rewrite of the commits in ``supersedes``)."""
    shards: tuple[str, ...]
    records: int
    created_at: str
    supersedes: tuple[str, ...] = ()
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Commit:
        raw = json.loads(data)
        return cls(
            **{**raw, "shards": tuple(raw["shards"]), "supersedes": tuple(raw["supersedes"])}
        )


@dataclass(frozen=True)
class Snapshot:
    """The set of commits live at one moment; ``id`` names that set and nothing else."""

    id: str
    commits: tuple[str, ...]
    shards: tuple[str, ...]
    taken_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Snapshot:
        raw = json.loads(data)
        return cls(
            id=raw["id"],
            commits=tuple(raw["commits"]),
            shards=tuple(raw["shards"]),
            taken_at=raw["taken_at"],
        )


def live_commits(commits: Iterable[Commit]) -> list[Commit]:
    """The commits no other commit supersedes."""
    commits = list(commits)
    superseded = {name for c in commits for name in c.supersedes}
    return [c for c in commits if c.name not in superseded]

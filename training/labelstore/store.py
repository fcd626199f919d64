"""The label store: Parquet shards, a log of small commit manifests, content-addressed blobs.

Layout under the store's root (a directory or any fsspec URL)::

    _commits/<ms>-<id>.json   one manifest per commit: the shards it adds, the commits it replaces
    _snapshots/<id>.json      pinned snapshots (what a retraining cycle read), kept from vacuum
    shards/<id>.parquet       records (schema: ``training.labelstore.records.SCHEMA``)
    blobs/ab/abcdef...        image bytes, named by their SHA-256

A shard is written first and becomes visible only when a commit naming it is written, atomically;
so a crash at any point leaves either no trace a reader sees or a complete shard. Commits have
unique names, so several writers never conflict; duplicates they may create are removed on read
(:func:`training.labelstore.dedupe.latest_labels`). Compaction rewrites the live shards into one
and marks their commits superseded; vacuum deletes what compaction superseded once no reader can
still be using it.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from schemas.errors import AigisError
from training.labelstore.dedupe import latest_labels
from training.labelstore.fs import StoreFS
from training.labelstore.records import FORMAT_VERSION, SCHEMA, LabelRecord, Origin, to_table

if TYPE_CHECKING:
    from schemas.settings import Settings

COMMITS: Final[str] = "_commits"
SNAPSHOTS: Final[str] = "_snapshots"
SHARDS: Final[str] = "shards"
BLOBS: Final[str] = "blobs"

_READ_ATTEMPTS: Final[int] = 3


class StoreError(AigisError):
    """The label store cannot be read or written as asked; ``url`` names the store."""

    def __init__(self, detail: str, url: str) -> None:
        self.url = url
        super().__init__(f"label store {url}: {detail}")


class ImageHashMismatchError(StoreError):
    """Image bytes do not hash to the SHA-256 their message claims; the record is not stored."""


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


class LabelStore:
    """Read and write one label store. Cheap to create; holds no open files between calls.

    ``keep_image_bytes`` off stores no blobs: records keep only the image hash and URI.
    """

    def __init__(
        self,
        url: str,
        *,
        keep_image_bytes: bool = True,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.keep_image_bytes = keep_image_bytes
        self._fs = StoreFS(url, storage_options)

    @classmethod
    def from_settings(cls, settings: Settings) -> LabelStore:
        return cls(settings.store_url, keep_image_bytes=settings.store.keep_image_bytes)

    def exists(self) -> bool:
        """Whether anything has been committed at this URL (a cheap listing)."""
        return self._fs.exists(COMMITS)

    # -- writing ---------------------------------------------------------------------------

    def put_image(self, data: bytes, sha256: str) -> str | None:
        """Keep ``data`` as the blob of ``sha256`` and return its path in the store.

        Returns None (and keeps nothing) when the store does not keep image bytes. Raises
        ImageHashMismatchError when ``data`` does not hash to ``sha256``. Idempotent.
        """
        if not self.keep_image_bytes:
            return None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ImageHashMismatchError(
                f"the image bytes hash to {actual}, not to the image_sha256 {sha256} of their "
                "message; the producer of the message must hash the bytes it sends",
                self.url,
            )
        relative = blob_path(sha256)
        if not self._fs.exists(relative):
            self._fs.write_atomic(relative, data)
        return relative

    def append(self, records: Sequence[LabelRecord]) -> Commit | None:
        """Write ``records`` as one shard and commit it; return the commit (None if empty).

        When this returns, the records are durable and visible to every new reader.
        """
        if not records:
            return None
        return self._commit_table(to_table(list(records)), kind="append", supersedes=())

    def _commit_table(self, table: pa.Table, *, kind: str, supersedes: Iterable[str]) -> Commit:
        shard = f"{SHARDS}/{uuid.uuid4().hex}.parquet"
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        self._fs.write_atomic(shard, buffer.getvalue())
        commit = Commit(
            name=f"{time.time_ns() // 1_000_000:013d}-{uuid.uuid4().hex[:12]}.json",
            kind=kind,
            shards=(shard,),
            records=table.num_rows,
            created_at=datetime.now(UTC).isoformat(),
            supersedes=tuple(supersedes),
        )
        # The commit is what makes the shard visible; it is written last.
        self._fs.write_atomic(f"{COMMITS}/{commit.name}", commit.to_json())
        return commit

    # -- snapshots ---------------------------------------------------------------------------

    def commits(self) -> list[Commit]:
        """Every commit in the log, oldest name first."""
        found = []
        for name in self._fs.listdir(COMMITS):
            if not name.endswith(".json"):
                continue
            try:
                commit = Commit.from_json(self._fs.read(f"{COMMITS}/{name}"))
            except FileNotFoundError:
                continue  # vacuumed between the listing and the read
            except (ValueError, KeyError, TypeError) as exc:
                raise StoreError(
                    f"commit {name} is unreadable ({exc}); move it aside if it was written by "
                    "something other than aigis",
                    self.url,
                ) from None
            if commit.format_version > FORMAT_VERSION:
                raise StoreError(
                    f"commit {name} has format version {commit.format_version}, newer than the "
                    f"{FORMAT_VERSION} this aigis reads; upgrade aigis",
                    self.url,
                )
            found.append(commit)
        return found

    def snapshot(self, *, pin: bool = False) -> Snapshot:
        """The live commits now. ``pin`` records it so that vacuum keeps its shards."""
        live = _live(self.commits())
        names = tuple(sorted(c.name for c in live))
        digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
        snapshot = Snapshot(
            id=digest, commits=names, shards=tuple(s for c in live for s in c.shards)
        )
        if pin:
            self._fs.write_atomic(f"{SNAPSHOTS}/{snapshot.id}.json", snapshot.to_json())
        return snapshot

    def open_snapshot(self, snapshot_id: str) -> Snapshot:
        """A snapshot pinned earlier. Raises StoreError when there is none of that id."""
        try:
            return Snapshot.from_json(self._fs.read(f"{SNAPSHOTS}/{snapshot_id}.json"))
        except FileNotFoundError:
            raise StoreError(
                f"no pinned snapshot {snapshot_id!r}; pinned ones are {self.pinned()}", self.url
            ) from None

    def pinned(self) -> list[str]:
        return [name.removesuffix(".json") for name in self._fs.listdir(SNAPSHOTS)]

    # -- reading -----------------------------------------------------------------------------

    def read(
        self,
        snapshot: Snapshot | None = None,
        *,
        origin: Origin | None = None,
        dedupe: bool = True,
    ) -> pa.Table:
        """The records of ``snapshot`` (default: the store now) as an Arrow table of SCHEMA.

        ``dedupe`` keeps one record per image (the human decision, else the most confident
        pseudo-label); ``origin`` then keeps only records of that origin, so ``origin=PSEUDO``
        never returns an image a person has labelled.
        """
        for attempt in range(_READ_ATTEMPTS):
            current = snapshot or self.snapshot()
            try:
                table = self._read_shards(current.shards)
                break
            except FileNotFoundError as exc:
                # A concurrent vacuum removed a shard after the listing: list again.
                if snapshot is not None or attempt == _READ_ATTEMPTS - 1:
                    raise StoreError(
                        f"a shard of snapshot {current.id} is gone ({exc}); pin snapshots that "
                        "must stay readable",
                        self.url,
                    ) from None
        if dedupe:
            table = latest_labels(table)
        if origin is not None:
            table = table.filter(pc.equal(table["origin"], origin.value))
        return table

    def _read_shards(self, shards: Sequence[str]) -> pa.Table:
        if not shards:
            return SCHEMA.empty_table()
        paths = [self._fs.path(shard) for shard in shards]
        filesystem: Any = None if self._fs.local else self._fs.fs
        try:
            dataset = ds.dataset(paths, schema=SCHEMA, format="parquet", filesystem=filesystem)
            return dataset.to_table()
        except pa.ArrowInvalid as exc:
            raise StoreError(f"a shard is not valid Parquet ({exc})", self.url) from None

    def image_bytes(self, image_blob: str | None, image_uri: str | None) -> bytes:
        """The bytes of a record's image: its blob when kept, else what its URI points to.

        Raises StoreError when the record has neither or the image cannot be read.
        """
        try:
            if image_blob:
                return self._fs.read(image_blob)
            if image_uri:
                return _fetch_uri(image_uri)
        except (OSError, ValueError) as exc:
            where = image_blob or image_uri
            raise StoreError(f"cannot read image {where} ({exc})", self.url) from None
        raise StoreError(
            "the record has no image (stored with keep_image_bytes off and no URI); "
            "it can be used for hold-out exclusion but not for training",
            self.url,
        )

    # -- maintenance ---------------------------------------------------------------------------

    def compact(self, *, min_commits: int = 2) -> Commit | None:
        """Rewrite the live records, deduplicated, into one shard that supersedes their commits.

        Does nothing (returns None) when fewer than ``min_commits`` commits are live. Safe to run
        beside writers: commits made meanwhile stay live.
        """
        snapshot = self.snapshot()
        if len(snapshot.commits) < min_commits:
            return None
        table = self.read(snapshot)
        return self._commit_table(table, kind="compact", supersedes=snapshot.commits)

    def vacuum(self, *, grace_s: float = 3600.0) -> int:
        """Delete commits superseded more than ``grace_s`` ago and their shards; return how many.

        Shards of pinned snapshots stay. A commit is deleted only after every commit it
        supersedes is, so a crash mid-vacuum never brings a superseded commit back to life.
        """
        commits = {c.name: c for c in self.commits()}
        kept_shards = {s for c in _live(commits.values()) for s in c.shards}
        for snapshot_id in self.pinned():
            kept_shards.update(self.open_snapshot(snapshot_id).shards)
        cutoff = datetime.now(UTC).timestamp() - grace_s
        superseded_at: dict[str, float] = {}
        for commit in commits.values():
            when = datetime.fromisoformat(commit.created_at).timestamp()
            for name in commit.supersedes:
                superseded_at[name] = min(superseded_at.get(name, when), when)
        removed = 0
        progress = True
        while progress:
            progress = False
            for name in sorted(superseded_at):
                old = commits.get(name)
                if old is None or superseded_at[name] > cutoff:
                    continue
                if any(older in commits for older in old.supersedes):
                    continue
                for shard in old.shards:
                    if shard not in kept_shards:
                        self._fs.remove(shard)
                self._fs.remove(f"{COMMITS}/{name}")
                del commits[name]
                removed += 1
                progress = True
        return removed


def blob_path(sha256: str) -> str:
    """Where the bytes of the image ``sha256`` live, relative to the store root."""
    return f"{BLOBS}/{sha256[:2]}/{sha256}"


def _live(commits: Iterable[Commit]) -> list[Commit]:
    commits = list(commits)
    superseded = {name for c in commits for name in c.supersedes}
    return [c for c in commits if c.name not in superseded]


def _fetch_uri(uri: str) -> bytes:
    if uri.startswith(("http://", "https://")):
        import httpx

        try:
            response = httpx.get(uri, timeout=30.0, follow_redirects=True)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise OSError(str(exc)) from None
        return response.content
    import fsspec

    with fsspec.open(uri, "rb") as handle:
        data: bytes = handle.read()
        return data

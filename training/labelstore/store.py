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
still be using it, and the blobs no remaining record names.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from schemas.settings import WorkerSettings
from schemas.uris import redact_uri
from training.labelstore.blobs import blob_path, unreferenced_blobs
from training.labelstore.commits import Commit, Snapshot, live_commits
from training.labelstore.dedupe import latest_labels
from training.labelstore.errors import ImageError, ImageHashMismatchError, StoreError
from training.labelstore.fetch import FetchError, fetch_image
from training.labelstore.fs import StoreFS
from training.labelstore.records import FORMAT_VERSION, SCHEMA, LabelRecord, Origin, to_table

if TYPE_CHECKING:
    from schemas.settings import Settings

COMMITS: Final[str] = "_commits"
SNAPSHOTS: Final[str] = "_snapshots"
SHARDS: Final[str] = "shards"

_READ_ATTEMPTS: Final[int] = 3
_SHA256: Final[re.Pattern[str]] = re.compile(r"[0-9a-f]{64}")
_WORKER: Final[WorkerSettings] = WorkerSettings()


@dataclass(frozen=True)
class Vacuumed:
    """What one vacuum deleted."""

    commits: int
    blobs: int


class LabelStore:
    """Read and write one label store. Cheap to create; holds no open files between calls.

    ``keep_image_bytes`` off (the default) stores no blobs: records keep only the image
    hash and URI. Images read back through a URI go through the process's fetch policy
    (:mod:`training.labelstore.fetch`) and are bounded by ``max_image_bytes``.
    """

    def __init__(
        self,
        url: str,
        *,
        keep_image_bytes: bool = False,
        max_image_bytes: int = _WORKER.max_image_bytes,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.keep_image_bytes = keep_image_bytes
        self.max_image_bytes = max_image_bytes
        self._fs = StoreFS(url, storage_options)

    @classmethod
    def from_settings(cls, settings: Settings) -> LabelStore:
        return cls(
            settings.store_url,
            keep_image_bytes=settings.store.keep_image_bytes,
            max_image_bytes=settings.worker.max_image_bytes,
        )

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
        self._check_hash(
            data,
            sha256,
            "of their message; the producer of the message must hash the bytes it sends",
        )
        relative = blob_path(sha256)
        # A blob kept already is marked as written now (or written again): vacuum spares blobs
        # younger than its grace, and a record about to name this one may not be committed yet.
        if not self._fs.touch(relative):
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
        live = live_commits(self.commits())
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

    def _read_shards(self, shards: Sequence[str], columns: list[str] | None = None) -> pa.Table:
        if not shards:
            return SCHEMA.empty_table().select(columns or SCHEMA.names)
        paths = [self._fs.path(shard) for shard in shards]
        filesystem: Any = None if self._fs.local else self._fs.fs
        try:
            dataset = ds.dataset(paths, schema=SCHEMA, format="parquet", filesystem=filesystem)
            return dataset.to_table(columns=columns)
        except pa.ArrowInvalid as exc:
            raise StoreError(f"a shard is not valid Parquet ({exc})", self.url) from None

    def image_bytes(self, image_blob: str | None, image_uri: str | None, *, sha256: str) -> bytes:
        """The bytes of the record's image ``sha256``: its blob when kept, else its URI's.

        Checked before they are returned: at most ``max_image_bytes``, and hashing to
        ``sha256``, so an image replaced behind its URI since it was labelled is refused.
        Raises ImageError with a ``reason`` (see :data:`~training.labelstore.errors.IMAGE_REASONS`).
        """
        if not _SHA256.fullmatch(sha256):
            raise ImageError(
                "invalid_record",
                f"image hash {sha256[:80]!r} is not a SHA-256 hex digest",
                self.url,
            )
        if image_blob:
            # Content-addressed: the path is the hash's, whatever the record's column says.
            try:
                data = self._fs.read(blob_path(sha256))
            except (OSError, ValueError) as exc:
                raise ImageError(
                    "missing_blob", f"the kept bytes of image {sha256} are gone ({exc})", self.url
                ) from None
        elif image_uri:
            try:
                data = fetch_image(image_uri, max_bytes=self.max_image_bytes)
            except FetchError as err:
                shown = redact_uri(image_uri)
                detail = err.detail.replace(image_uri, shown)
                raise ImageError(
                    err.reason, f"image {sha256} at {shown}: {detail}", self.url
                ) from None
        else:
            raise ImageError(
                "no_image",
                f"image {sha256} was stored without bytes or URI (keep_image_bytes off); it can "
                "be used for hold-out exclusion but not for training",
                self.url,
            )
        if len(data) > self.max_image_bytes:
            raise ImageError(
                "image_too_large", f"image {sha256} is over {self.max_image_bytes} bytes", self.url
            )
        self._check_hash(
            data,
            sha256,
            "it was labelled under: the image changed since, so its label does not apply",
        )
        return data

    def _check_hash(self, data: bytes, sha256: str, consequence: str) -> None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ImageHashMismatchError(
                f"the image bytes hash to {actual}, not to the image_sha256 {sha256} {consequence}",
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

    def vacuum(self, *, grace_s: float = 3600.0) -> Vacuumed:
        """Delete commits superseded more than ``grace_s`` ago and their shards, then the blobs
        no remaining record names that were written more than ``grace_s`` ago.

        Shards of pinned snapshots, and the blobs their records name, stay. A commit is deleted
        only after every commit it supersedes is, so a crash mid-vacuum never brings a
        superseded commit back to life.
        """
        commits = {c.name: c for c in self.commits()}
        pinned = {s for name in self.pinned() for s in self.open_snapshot(name).shards}
        kept_shards = {s for c in live_commits(commits.values()) for s in c.shards} | pinned
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
        shards = {s for c in commits.values() for s in c.shards} | pinned
        return Vacuumed(removed, self._vacuum_blobs(shards, cutoff))

    def _vacuum_blobs(self, shards: set[str], cutoff: float) -> int:
        """Delete blobs no record of ``shards`` names, written before ``cutoff``."""
        try:
            table = self._read_shards(sorted(shards), columns=["image_sha256", "image_blob"])
        except (FileNotFoundError, StoreError):
            return 0  # a concurrent vacuum removed a shard: leave the blobs to the next one
        named = pc.is_valid(table["image_blob"])
        referenced = {blob_path(sha) for sha in table.filter(named)["image_sha256"].to_pylist()}
        stale = unreferenced_blobs(self._fs, referenced, cutoff)
        for relative in stale:
            self._fs.remove(relative)
        return len(stale)

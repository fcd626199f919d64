"""The near-duplicate cache: PDQ hashes of scored images, shared through Redis, searched locally.

Redis is the source of truth: every worker appends ``(hash, cache key suffix)`` of what it scored
to one list per model version, ``{prefix}:pdq:{version}``, and each worker keeps a local copy of
that list in a faiss binary index, reading only the entries it has not seen, in one round trip
per lookup, so all workers search the same hashes. The list expires with the verdicts
(``ttl_seconds`` after the last write); a list shorter than the copy (expired, or flushed) is read
again whole.

An image is decoded at a reduced size and resized to 64x64 pixels, PDQ's own working size, before
it is hashed. At that size PDQ's eight dihedral hashes (the image rotated by 0, 90, 180 and 270
degrees, and those mirrored) are exact: each equals the hash of the transformed pixels. A lookup
searches the image and its left-right mirror (only those two hashes are computed), or all eight
orientations when ``evidence.match_rotations`` is on (four times the search), among the stored
hashes (one orientation each) by Hamming distance, with faiss's exhaustive range search: no
match within the distance is missed.
Only entries with the miss's caption part match when the model reads captions, so the namespace is
the exact cache's. Images whose PDQ quality is under ``min_quality`` are neither looked up nor
stored.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

import faiss
import numpy as np
import numpy.typing as npt
import pdqhash
import redis
from PIL import Image

from schemas.settings import Settings
from serving.errors import ImageError
from serving.imageio import decode_image

HASH_BYTES = 32
"""A PDQ hash is 256 bits."""
PDQ_SIDE = 64
"""The side PDQ downsamples to; resizing to it first makes the dihedral hashes exact."""
ORIENTATIONS = 8
"""Hashes ``pdqhash.compute_dihedral`` gives: one per orientation."""
MIRROR = 5
"""Index of the left-right mirror among ``pdqhash.compute_dihedral``'s eight hashes (identity,
rotations by 90, 180 and 270 degrees, top-bottom mirror, left-right mirror, transpose,
transverse)."""


@dataclass(frozen=True)
class Hashed:
    """The PDQ hashes of an image's orientations, and the hash's quality (0-100).

    ``orientations``: all eight, in ``pdqhash.compute_dihedral``'s order, or only the image and
    its left-right mirror (what a lookup without rotations searches)."""

    orientations: tuple[bytes, ...]
    quality: int

    @property
    def hash(self) -> bytes:
        """The hash of the image as it is: what is stored."""
        return self.orientations[0]

    @property
    def mirror(self) -> bytes:
        """The hash of the image's left-right mirror."""
        return self.orientations[MIRROR if len(self.orientations) > MIRROR else 1]

    def queries(self, rotations: bool) -> tuple[bytes, ...]:
        """What a lookup searches for: every orientation, or the image and its mirror."""
        if not rotations:
            return (self.hash, self.mirror)
        if len(self.orientations) != ORIENTATIONS:
            raise ValueError("rotations are searched, but the image was hashed without them")
        return self.orientations


@dataclass(frozen=True)
class Match:
    """The nearest stored image within the match distance."""

    suffix: str
    """Its exact-cache key suffix (image sha256, and the caption part when captions are read)."""
    distance: int

    @property
    def image_sha256(self) -> str:
        return self.suffix.partition(":")[0]


def pdq(data: bytes, side: int, *, rotations: bool = True) -> Hashed | None:
    """The PDQ hashes of an image file, decoded at about ``side`` pixels on its short side: of
    all eight orientations, or (``rotations=False``) of the image and its mirror only, the same
    two hashes for two thirds of PDQ's own time. None when it cannot be decoded here."""
    try:
        image = decode_image(data, target_side=side)
    except ImageError:
        return None
    square = np.asarray(image.resize((PDQ_SIDE, PDQ_SIDE), Image.Resampling.BILINEAR))
    if rotations:
        hashes, quality = pdqhash.compute_dihedral(square)
        return Hashed(tuple(_pack(bits) for bits in hashes), int(quality))
    bits, quality = pdqhash.compute(square)
    mirrored, _ = pdqhash.compute(np.ascontiguousarray(square[:, ::-1]))
    return Hashed((_pack(bits), _pack(mirrored)), int(quality))


def _pack(bits: npt.NDArray[np.integer]) -> bytes:
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()


# A worker shares its cores with the model server: OpenMP threads contending for them made a
# search twice as slow as one thread on a loaded two-core machine.
faiss.omp_set_num_threads(1)


@dataclass
class _Index:
    """The local copy of one version's list: the hashes in a faiss binary index (exhaustive
    search, 32 bytes a hash), their key suffixes in the same order, and a number for each
    suffix's caption part so that the caption filter runs in numpy."""

    hashes: faiss.IndexBinaryFlat = field(default_factory=lambda: faiss.IndexBinaryFlat(256))
    suffixes: list[str] = field(default_factory=list)
    caption_ids: array[int] = field(default_factory=lambda: array("q"))
    captions: dict[str, int] = field(default_factory=dict)

    def extend(self, entries: Sequence[bytes]) -> None:
        good = [e for e in entries if len(e) > HASH_BYTES]
        if not good:
            return
        raw = b"".join(e[:HASH_BYTES] for e in good)
        self.hashes.add(np.frombuffer(raw, dtype=np.uint8).reshape(-1, HASH_BYTES))
        for entry in good:
            suffix = entry[HASH_BYTES:].decode("ascii", "replace")
            caption = suffix.partition(":")[2]
            self.suffixes.append(suffix)
            self.caption_ids.append(self.captions.setdefault(caption, len(self.captions)))

    def nearest(
        self, queries: Sequence[tuple[Hashed, str]], limit: int, rotations: bool
    ) -> list[Match | None]:
        """The nearest entry with the same caption part within ``limit`` bits of any searched
        orientation of each ``(hash, caption part)``; the earliest stored wins a tie."""
        if not self.suffixes or not queries:
            return [None] * len(queries)
        each = len(queries[0][0].queries(rotations))
        raw = b"".join(q for hashed, _ in queries for q in hashed.queries(rotations))
        codes = np.frombuffer(raw, dtype=np.uint8).reshape(-1, HASH_BYTES)
        bounds, distances, ids = self.hashes.range_search(codes, limit + 1)  # radius is strict
        # Distance first, then position: the nearest, and the earliest of equally near ones.
        keys = distances.astype(np.int64) << 40 | ids
        caption_of = np.frombuffer(self.caption_ids, dtype=np.int64)[ids]
        found: list[Match | None] = []
        for i, (_, caption) in enumerate(queries):
            lo, hi = int(bounds[i * each]), int(bounds[(i + 1) * each])
            same = keys[lo:hi][caption_of[lo:hi] == self.captions.get(caption, -1)]
            if not len(same):
                found.append(None)
                continue
            best = int(same.min())
            found.append(Match(self.suffixes[best & (1 << 40) - 1], best >> 40))
        return found


class NearDuplicates:
    """Stores and searches PDQ hashes; Redis errors propagate (the caller treats Redis as an
    accelerator, as it does for the exact cache)."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self._prefix = f"{settings.redis.key_prefix}:pdq"
        self._ttl = settings.redis.ttl_seconds
        self._evidence = settings.evidence
        self._redis = client
        self._indexes: dict[str, _Index] = {}

    def lookup(self, version: str, queries: Sequence[tuple[Hashed, str]]) -> list[Match | None]:
        """The nearest match of each ``(hash, key suffix)`` within ``match_distance``, or None
        (also for a hash under ``min_quality``, and for the image itself). One round trip reads
        what other workers added; one search covers all ``queries`` (the pipeline asks a
        request's worth of a batch at a time, so that each request leaves once examined)."""
        index = self._sync(version)
        ev = self._evidence
        wanted = [i for i, (hashed, _) in enumerate(queries) if hashed.quality >= ev.min_quality]
        asked = [(queries[i][0], queries[i][1].partition(":")[2]) for i in wanted]
        found: list[Match | None] = [None] * len(queries)
        matches = index.nearest(asked, ev.match_distance, ev.match_rotations)
        for i, match in zip(wanted, matches, strict=True):
            if match is not None and match.image_sha256 != queries[i][1].partition(":")[0]:
                found[i] = match
        return found

    def store(self, version: str, entries: Sequence[tuple[Hashed, str]]) -> None:
        """Append ``(hash, key suffix)`` pairs of one version, those of enough quality."""
        values = [
            h.hash + s.encode() for h, s in entries if h.quality >= self._evidence.min_quality
        ]
        if not values:
            return
        key = f"{self._prefix}:{version}"
        pipe = self._redis.pipeline(transaction=False)
        pipe.rpush(key, *values)
        pipe.expire(key, self._ttl)
        pipe.execute()

    def footprint(self, version: str) -> tuple[int, int]:
        """Hashes in the local copy of ``version``'s list, and about how many bytes it holds."""
        index = self._indexes.get(version)
        if index is None:
            return 0, 0
        suffixes = sum(sys.getsizeof(s) + 8 for s in index.suffixes)  # and its list slot
        held = index.hashes.ntotal * HASH_BYTES + index.caption_ids.itemsize * len(index.suffixes)
        return len(index.suffixes), held + suffixes

    def _sync(self, version: str) -> _Index:
        key = f"{self._prefix}:{version}"
        index = self._indexes.setdefault(version, _Index())
        seen = len(index.suffixes)
        pipe = self._redis.pipeline(transaction=False)
        pipe.llen(key)
        pipe.lrange(key, seen, -1)
        length, entries = pipe.execute()
        if int(length) < seen:  # expired or flushed since: read it again whole
            index = self._indexes[version] = _Index()
            entries = self._redis.lrange(key, 0, -1)
        index.extend(entries)
        return index

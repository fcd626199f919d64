"""The near-duplicate cache: PDQ hashes of scored images, shared through Redis, searched locally.

Redis is the source of truth: every worker appends ``(hash, cache key suffix)`` of what it scored
to one list per model version, ``{prefix}:pdq:{version}``, and each worker keeps a local copy of
that list, reading only the entries it has not seen, in one round trip per lookup, so all workers
search the same hashes. The list expires with the verdicts (``ttl_seconds`` after the last write);
a list shorter than the copy (expired, or flushed) is read again whole.

A lookup compares a miss's hash, and the hash of its mirror image (so a left-right flip matches;
rotations do not), with every stored hash by Hamming distance: a linear scan that counts bits
over four rows of 64-bit words, each row contiguous. Only entries with the miss's caption part
match when the model reads captions, so the namespace is the exact cache's. Images whose PDQ
quality is under ``min_quality`` are neither looked up nor stored.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pdqhash
import redis

from schemas.settings import Settings
from serving.errors import ImageError
from serving.imageio import decode_image

HASH_BYTES = 32
"""A PDQ hash is 256 bits."""


@dataclass(frozen=True)
class Hashed:
    """The PDQ hash of an image and of its mirror, and the hash's quality (0-100)."""

    hash: bytes
    mirror: bytes
    quality: int


@dataclass(frozen=True)
class Match:
    """The nearest stored image within the match distance."""

    suffix: str
    """Its exact-cache key suffix (image sha256, and the caption part when captions are read)."""
    distance: int

    @property
    def image_sha256(self) -> str:
        return self.suffix.partition(":")[0]


def pdq(data: bytes, side: int) -> Hashed | None:
    """The PDQ hashes of an image file; None when it cannot be decoded here."""
    try:
        image = decode_image(data, target_side=side)
    except ImageError:
        return None
    image.thumbnail((side, side))
    pixels = np.asarray(image)
    bits, quality = pdqhash.compute(pixels)
    mirror, _ = pdqhash.compute(np.ascontiguousarray(pixels[:, ::-1]))
    return Hashed(_pack(bits), _pack(mirror), int(quality))


def _pack(bits: npt.NDArray[np.integer]) -> bytes:
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()


@dataclass
class _Index:
    """The local copy of one version's list: hashes as four rows of 64-bit words (a row is
    contiguous, so a scan streams through memory), grown by doubling."""

    words: npt.NDArray[np.uint64] = field(default_factory=lambda: np.zeros((4, 0), np.uint64))
    suffixes: list[str] = field(default_factory=list)

    def extend(self, entries: Sequence[bytes]) -> None:
        good = [e for e in entries if len(e) > HASH_BYTES]
        if not good:
            return
        raw = b"".join(e[:HASH_BYTES] for e in good)
        new = np.frombuffer(raw, dtype=np.uint64).reshape(-1, 4).T
        size, need = len(self.suffixes), len(self.suffixes) + len(good)
        if need > self.words.shape[1]:
            grown = np.zeros((4, max(need, 2 * self.words.shape[1], 1024)), np.uint64)
            grown[:, :size] = self.words[:, :size]
            self.words = grown
        self.words[:, size:need] = new
        self.suffixes += [e[HASH_BYTES:].decode("ascii", "replace") for e in good]

    def _distances(self, query: bytes) -> npt.NDArray[np.uint8]:
        q = np.frombuffer(query, dtype=np.uint64)
        words = self.words[:, : len(self.suffixes)]
        distances: npt.NDArray[np.uint8] = np.bitwise_count(words[0] ^ q[0])
        for row in range(1, 4):
            distances += np.bitwise_count(words[row] ^ q[row])
        return distances

    def nearest(self, hashed: Hashed, caption: str, limit: int) -> Match | None:
        if not self.suffixes:
            return None
        best: Match | None = None
        for query in (hashed.hash, hashed.mirror):
            distances = self._distances(query)
            for i in np.flatnonzero(distances <= limit):
                suffix = self.suffixes[int(i)]
                d = int(distances[i])
                if suffix.partition(":")[2] == caption and (best is None or d < best.distance):
                    best = Match(suffix, d)
        return best


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
        (also for a hash under ``min_quality``). One round trip reads what other workers added."""
        index = self._sync(version)
        limit, quality = self._evidence.match_distance, self._evidence.min_quality
        found: list[Match | None] = []
        for hashed, suffix in queries:
            image, _, caption = suffix.partition(":")
            match = None if hashed.quality < quality else index.nearest(hashed, caption, limit)
            found.append(None if match is None or match.image_sha256 == image else match)
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
        return len(index.suffixes), index.words.nbytes + suffixes

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

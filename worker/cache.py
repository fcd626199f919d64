"""The verdict cache in Redis: one round trip to look up a batch, one pipeline to store it.

Key: ``{prefix}:{model_version}:{label_set}:{image_sha256}``, plus ``:{caption_sha256}`` when the
model reads captions; ``label_set`` is :func:`schemas.labels.label_set_id` of the model's classes
(the served model's for lookups, the keys of a score's ``generator_probs`` for stores), so a
model whose label set changed never reads scores of the old set, even under the same version
string. The version used for lookups is the one named by ``settings.redis.namespace_key``
(promotion and rollback write it), read in the same round trip as the lookups by a Lua script;
when that key is absent the caller's version (the served model's) is used. So once a promotion
has written the namespace, no event is answered from the previous model's entries. The images
in a canary's slice (:mod:`worker.canary`) are looked up under the candidate's version instead,
in the same round trip.

The same round trip reads the human review labels of the batch's images
(:mod:`schemas.overrides`): a label a reviewer gave answers its image before any cached score,
whatever the model version.

Redis is an accelerator: when it fails, lookups answer "no cache" and stores are skipped until
``retry_interval_s`` has passed, with one log line per interval.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import redis
import structlog

from schemas.labels import label_set_id
from schemas.overrides import HumanLabel, override_key
from schemas.settings import RedisSettings
from worker.score import Score

log = structlog.get_logger(__name__)

T = TypeVar("T")

# KEYS[1]: the namespace key; KEYS[2..]: override keys. ARGV[1]: the version to use when the
# namespace is absent; ARGV[2]: the key prefix; ARGV[3]: the label set id; ARGV[4]: a canary
# candidate's "version:label set id"; ARGV[5]: one character per suffix, '1' where that suffix is
# looked up under the candidate; ARGV[6..]: key suffixes. Returns {version, value or false per
# suffix, value or false per override key}. The script builds keys it was not given, which is
# fine on one Redis and not on a cluster (keys on many slots).
_LOOKUP = """
local version = redis.call('GET', KEYS[1])
if not version then version = ARGV[1] end
local keys = {}
local base = ARGV[2] .. ':' .. version .. ':' .. ARGV[3] .. ':'
local candidate = ARGV[2] .. ':' .. ARGV[4] .. ':'
for i = 6, #ARGV do
  if string.sub(ARGV[5], i - 5, i - 5) == '1' then
    keys[#keys + 1] = candidate .. ARGV[i]
  else
    keys[#keys + 1] = base .. ARGV[i]
  end
end
for i = 2, #KEYS do keys[#keys + 1] = KEYS[i] end
if #keys == 0 then return {version} end
local values = redis.call('MGET', unpack(keys))
table.insert(values, 1, version)
return values
"""

_NO_CAPTION = "none"
"""Caption part of the key when an event has no caption (distinct from an empty caption)."""

_REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key_suffix(image_sha256: str, caption: str | None, *, reads_caption: bool) -> str:
    """The part of a cache key after the version: what the model read."""
    if not reads_caption:
        return image_sha256
    caption_part = _NO_CAPTION if caption is None else sha256_hex(caption.encode())
    return f"{image_sha256}:{caption_part}"


def cache_key(prefix: str, version: str, generators: Sequence[str], suffix: str) -> str:
    """The key of a score of model ``version`` with label set ``generators``."""
    return f"{prefix}:{version}:{label_set_id(generators)}:{suffix}"


@dataclass(frozen=True)
class Lookup:
    """The outcome of one batch lookup: the version looked under, a score or None per key, and
    a human label or None per image hash asked about."""

    version: str
    scores: list[Score | None]
    humans: list[HumanLabel | None]


class VerdictCache:
    """Looks up and stores scores for a batch; never raises for a Redis failure."""

    def __init__(self, settings: RedisSettings, client: redis.Redis | None = None) -> None:
        self._settings = settings
        password = settings.password.get_secret_value() if settings.password else None
        self._redis = client or redis.Redis.from_url(
            settings.url,
            password=password,
            socket_timeout=settings.socket_timeout_s,
            socket_connect_timeout=settings.socket_timeout_s,
        )
        self._lookup = self._redis.register_script(_LOOKUP)
        self._down_until = 0.0
        self._down_since: float | None = None

    def close(self) -> None:
        self._redis.close()

    @property
    def client(self) -> redis.Redis:
        """The Redis client, for stores beside the verdicts that share its fate."""
        return self._redis

    @property
    def available(self) -> bool:
        """False while a recent failure says not to try Redis yet."""
        return time.monotonic() >= self._down_until

    def lookup(
        self,
        suffixes: Sequence[str],
        default_version: str,
        image_hashes: Sequence[str] = (),
        canary: tuple[str, Sequence[str], Sequence[bool]] | None = None,
        *,
        generators: Sequence[str],
    ) -> Lookup | None:
        """Scores for ``suffixes`` under the current namespace and the label set ``generators``
        (the served model's), and human labels for ``image_hashes``; None when Redis is
        unavailable. ``canary``: a candidate's version and label set and, per suffix, whether it
        is looked up in that version's namespace instead."""
        if not self.available:
            return None
        ns = self._settings.namespace_key
        humans = [override_key(self._settings.override_prefix, h) for h in image_hashes]
        try:
            reply = self._lookup(
                keys=[ns, *humans],
                args=[
                    default_version,
                    self._settings.key_prefix,
                    label_set_id(generators),
                    *_canary_args(canary),
                    *suffixes,
                ],
            )
        except _REDIS_ERRORS as exc:
            self._failed("lookup", exc)
            return None
        self._recovered()
        version = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        values, humans_found = reply[1 : 1 + len(suffixes)], reply[1 + len(suffixes) :]
        scores = [None if v is None else Score.from_json(v) for v in values]
        labels = [None if v is None else HumanLabel.from_json(v) for v in humans_found]
        return Lookup(version, scores, labels)

    def store(self, entries: Sequence[tuple[str, Score]]) -> None:
        """Write ``(suffix, score)`` pairs, each under the version and label set that produced
        the score."""
        if not entries or not self.available:
            return
        prefix, ttl = self._settings.key_prefix, self._settings.ttl_seconds
        try:
            pipe = self._redis.pipeline(transaction=False)
            for suffix, score in entries:
                key = cache_key(prefix, score.model_version, list(score.generator_probs), suffix)
                pipe.set(key, score.to_json(), ex=ttl)
            pipe.execute()
        except _REDIS_ERRORS as exc:
            self._failed("store", exc)
            return
        self._recovered()

    def guarded(self, action: str, call: Callable[[], T]) -> T | None:
        """``call()``, or None when Redis is unavailable or fails (then as a lookup does)."""
        if not self.available:
            return None
        try:
            result = call()
        except _REDIS_ERRORS as exc:
            self._failed(action, exc)
            return None
        self._recovered()
        return result

    def _failed(self, action: str, exc: Exception) -> None:
        now = time.monotonic()
        interval = self._settings.retry_interval_s
        self._down_until = now + interval
        if self._down_since is None:
            self._down_since = now
        log.warning(
            "redis_unavailable",
            action=action,
            error=f"{type(exc).__name__}: {exc}",
            down_for_s=round(now - self._down_since, 1),
            retry_in_s=interval,
            hint="scoring continues uncached; check `aigis dev status` or settings.redis.url",
        )

    def _recovered(self) -> None:
        if self._down_since is not None:
            log.info("redis_recovered", down_for_s=round(time.monotonic() - self._down_since, 1))
            self._down_since = None


def _canary_args(canary: tuple[str, Sequence[str], Sequence[bool]] | None) -> tuple[str, str]:
    if canary is None:
        return "", ""
    version, generators, chosen = canary
    return f"{version}:{label_set_id(generators)}", "".join("1" if c else "0" for c in chosen)

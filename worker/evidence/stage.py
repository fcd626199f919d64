"""The evidence stage of a batch: near-duplicates first, then the signals each miss carries.

For each exact-cache miss, in order:

1. Its PDQ hash is looked up among the images already scored (:mod:`worker.neardup`). A match
   within ``reuse_distance`` that a reviewer has labelled answers the miss with the human's
   label (:mod:`schemas.overrides`, read in the round trip that reads the matched score);
   otherwise one whose verdict is still cached answers it: the matched score, with its
   evidence, and ``near_duplicate_of``; the model is not asked either way. A match within
   ``match_distance`` of an image decided ``ai_generated`` (by a reviewer when one labelled it,
   else by the matched score) is a ``near_duplicate`` signal (``similar``); a match with a
   human image says nothing (evidence only supports "AI").
2. The rest have their provenance and metadata read (:class:`worker.evidence.EvidenceReader`).

Redis failing costs the near-duplicate step only (the exact cache's policy: an accelerator);
an image that cannot be hashed or read costs its evidence, with a reason, never the event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from schemas import Decision
from schemas.decision import decide, fuse, name_generator
from schemas.messages import Evidence, NearDuplicate
from schemas.overrides import HumanLabel
from schemas.settings import Settings
from worker.cache import VerdictCache
from worker.evidence import EvidenceReader
from worker.neardup import Hashed, Match, NearDuplicates, pdq
from worker.score import Score


@dataclass
class Found:
    """What the stage found for one miss."""

    evidence: list[Evidence] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    hashed: Hashed | None = None
    reused: Score | None = None
    """The matched image's score when a near-duplicate answers this miss."""
    near_duplicate_of: NearDuplicate | None = None
    human: HumanLabel | None = None
    """The reviewer's label of the matched image when it answers this miss."""


class EvidenceStage:
    """Runs the stage for a batch's misses; one per worker."""

    def __init__(self, settings: Settings, cache: VerdictCache) -> None:
        self._settings = settings
        self._cache = cache
        ev = settings.evidence
        self._reader = EvidenceReader(ev) if ev.enabled else None
        self._near = NearDuplicates(settings, cache.client) if ev.near_duplicates else None

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()

    def examine(
        self,
        misses: Sequence[tuple[bytes, str]],
        version: str | None,
        *,
        generators: Sequence[str],
    ) -> list[Found]:
        """A :class:`Found` per ``(image bytes, key suffix)``; ``version`` is the namespace the
        exact cache looked under (None when Redis was unavailable: no near-duplicate step) and
        ``generators`` the served model's label set."""
        found = [Found() for _ in misses]
        if self._near is not None and version is not None:
            self._near_duplicates(misses, found, version, generators)
        if self._reader is not None:
            for (data, _), f in zip(misses, found, strict=True):
                if f.reused is None and f.human is None:
                    reading = self._reader.read(data)
                    f.evidence += reading.signals
                    f.ignored += reading.ignored
        return found

    def remember(self, entries: Sequence[tuple[Hashed, str, str]]) -> None:
        """Store ``(hash, key suffix, model version)`` of scored misses for later lookups."""
        if self._near is None or not entries:
            return
        near = self._near
        by_version: dict[str, list[tuple[Hashed, str]]] = {}
        for hashed, suffix, version in entries:
            by_version.setdefault(version, []).append((hashed, suffix))
        for version, pairs in by_version.items():
            self._cache.guarded("near_duplicate_store", partial(near.store, version, pairs))

    def _near_duplicates(
        self,
        misses: Sequence[tuple[bytes, str]],
        found: list[Found],
        version: str,
        generators: Sequence[str],
    ) -> None:
        assert self._near is not None
        near, ev = self._near, self._settings.evidence
        for (data, _), f in zip(misses, found, strict=True):
            try:
                f.hashed = pdq(data, ev.hash_side, rotations=ev.match_rotations)
            except Exception:  # a decoder's failure costs the hash, never the event
                f.hashed = None
            if f.hashed is None:
                f.ignored.append("unhashable")
        queries = [(f.hashed, s) for (_, s), f in zip(misses, found, strict=True) if f.hashed]
        if not queries:
            return
        matches = self._cache.guarded(
            "near_duplicate_lookup", lambda: near.lookup(version, queries)
        )
        if matches is None:
            return
        hashed = [f for f in found if f.hashed]
        pairs = [(f, m) for f, m in zip(hashed, matches, strict=True) if m is not None]
        lookup = None
        if pairs:
            matched = [m for _, m in pairs]
            lookup = self._cache.lookup(
                [m.suffix for m in matched],
                version,
                [m.image_sha256 for m in matched],
                generators=generators,
            )
        if lookup is None:
            return
        for (f, match), score, human in zip(pairs, lookup.scores, lookup.humans, strict=True):
            if score is None and human is None:
                continue  # the matched verdict has expired: no near-duplicate
            try:
                self._apply(f, match, score, human)
            except ValueError:  # an entry in Redis that names no valid image
                f.ignored.append("near_duplicate_unusable")

    def _apply(self, f: Found, match: Match, score: Score | None, human: HumanLabel | None) -> None:
        """What the match says: a reviewer's label of the matched image comes before its
        score, within the reuse distance and as evidence beyond it."""
        ev, bands = self._settings.evidence, self._settings.worker
        near = NearDuplicate(image_sha256=match.image_sha256, distance=match.distance)
        if match.distance <= ev.reuse_distance:
            f.reused, f.human = (None, human) if human is not None else (score, None)
            f.near_duplicate_of = near
            return
        if human is not None:
            decision, generator = human.decision, human.generator
        else:
            assert score is not None
            decided = decide(score.p_ai, bands)
            generator = name_generator(decided, score.p_ai, score.generator_probs, bands)
            fused = fuse(decided, generator, score.evidence, ev)
            decision, generator = fused.decision, fused.generator
        if decision is Decision.AI_GENERATED:
            f.evidence.append(
                Evidence(
                    kind="near_duplicate",
                    value=f"near-duplicate of {match.image_sha256} at distance {match.distance}",
                    generator=generator[:128],
                    strength="similar",
                )
            )

"""One micro-batch from records to outputs: validate, fetch, hash, look up, probe what the
cache did not answer (:mod:`worker.admit`), evidence, score, route.

An image a reviewer has labelled is answered with the human's label (``decided_by: human``)
before the cache and the model are consulted, and so is a near-duplicate of one within
``evidence.reuse_distance`` (found by the evidence stage). With
``evidence.skip_model_when_proven``, an image whose provenance decided it is not sent to the
model either. The images in a canary's slice are looked up and answered by the candidate version
(:mod:`worker.canary`), their keys with the caption when either version reads it.

Produces what the batch would publish without publishing it, so the caller decides how it is
committed (and can retry the batch whole when the model server is unavailable). Each step that
works on one record has a barrier: whatever that record makes it raise sends that record to the
DLQ (``internal_error``, naming the exception's type, never its text) and the batch goes on.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime

import structlog

from schemas import Timings
from schemas.canary import CanaryState, in_slice
from schemas.decision import proven
from schemas.settings import Settings
from worker.admit import Admission, Item
from worker.cache import VerdictCache, key_suffix
from worker.canary import Canary
from worker.evidence.stage import EvidenceStage
from worker.fetch import Fetcher
from worker.logged import where
from worker.processed import Processed, VerdictFacts
from worker.route import build_verdict, end_to_end_ms, human_verdict, proven_verdict, route
from worker.runtime.batch import Batch
from worker.runtime.checkpoint import Output, traced
from worker.score import Score
from worker.scorer import Rejected, Scorer, Scoring

log = structlog.get_logger(__name__)


class Pipeline:
    """Turns a batch of records into outputs. Raises ServingUnavailable (nothing is lost)."""

    def __init__(
        self,
        settings: Settings,
        fetcher: Fetcher,
        cache: VerdictCache,
        scorer: Scorer,
        evidence: EvidenceStage | None = None,
        canary: Canary | None = None,
    ) -> None:
        self._settings = settings
        self._admit = Admission(settings, fetcher)
        self._cache = cache
        self._scorer = scorer
        self._evidence = evidence
        self._canary = canary

    def process(self, batch: Batch) -> Processed:
        started = time.monotonic()
        done = Processed()
        per_record: list[list[Output]] = [[] for _ in batch.records]
        items = self._admit.validate(batch, per_record, done)

        t = time.monotonic()
        items = self._admit.load(items, per_record, done)
        fetch_ms = _ms_since(t)

        t = time.monotonic()
        model = self._scorer.model()
        canary = self._canary.current() if self._canary else None
        candidate = self._canary.model(canary) if self._canary and canary else None
        for item in items:
            item.canary = bool(candidate and canary and in_slice(item.sha256, canary.percent))
            also = candidate.reads_caption if candidate and item.canary else False
            reads = model.reads_caption or also
            item.suffix = key_suffix(item.sha256, item.event.caption, reads_caption=reads)
        flags = [i.canary for i in items]
        slice_ = (candidate.version, candidate.generators, flags) if candidate else None
        lookup = self._cache.lookup(
            [i.suffix for i in items],
            model.version,
            [i.sha256 for i in items],
            slice_,
            generators=model.generators,
        )
        if lookup is None:
            done.cache_down = True
        else:
            for item, score, human in zip(items, lookup.scores, lookup.humans, strict=True):
                item.score, item.cached, item.human = score, score is not None, human
                item.evidence = list(score.evidence) if score else []
        cache_ms = _ms_since(t)

        # Only what the cache and the reviewers did not answer is probed (worker.admit).
        t = time.monotonic()
        unanswered = [i for i in items if i.score is None and i.human is None]
        probed = self._admit.probe(unanswered, per_record, done)
        rejected = {id(i) for i in unanswered} - {id(i) for i in probed}
        items = [i for i in items if id(i) not in rejected]
        unanswered = probed
        fetch_ms += _ms_since(t)

        # Each request goes to the model server as soon as its misses are examined, so the
        # server scores while the rest are hashed (worker.scorer.Scoring).
        version = None if lookup is None else lookup.version
        with self._scorer.begin() as scoring:
            firsts = self._examine_and_send(unanswered, version, model.generators, scoring, done)
            t = time.monotonic()
            answers = scoring.answers()
        misses = [i for i in items if _needs_model(i)]
        self._answer(misses, firsts, answers, per_record, done, canary if candidate else None)
        done.serving_s = time.monotonic() - (scoring.started or t)
        done.serving_wait_s = time.monotonic() - t
        done.cache_hits = sum(i.cached or i.human is not None for i in items)
        done.cache_misses = len(items) - done.cache_hits

        now = datetime.now(UTC)
        timings = dict(fetch_ms=fetch_ms, cache_ms=cache_ms, serving_ms=done.serving_s * 1000)
        for item in items:
            if _needs_model(item):
                continue  # rejected by the server: already a dead letter
            item_timings = Timings(
                **timings, total_ms=_ms_since(started), end_to_end_ms=end_to_end_ms(item.event, now)
            )
            try:
                served = (model.name, model.version)
                score = None if item.human is not None or item.proven else item.score
                if item.human is not None:
                    verdict = human_verdict(
                        item.event,
                        item.sha256,
                        item.human,
                        served,
                        item_timings,
                        item.near_duplicate_of,
                    )
                elif score is None:
                    verdict = proven_verdict(
                        item.event,
                        item.sha256,
                        item.evidence,
                        served,
                        item_timings,
                        self._settings.evidence,
                    )
                else:
                    verdict = build_verdict(
                        item.event,
                        item.sha256,
                        score,
                        cached=item.cached,
                        timings=item_timings,
                        settings=self._settings.worker,
                        evidence=item.evidence,
                        near_duplicate_of=item.near_duplicate_of,
                        policy=self._settings.evidence,
                    )
                per_record[item.index] = route(verdict, item.event, score, self._settings)
            except ValueError as exc:  # pydantic's ValidationError: the model said nonsense
                detail = f"the model's answer does not make a valid verdict: {exc}"
                per_record[item.index] = [
                    self._admit.reject(
                        item.record, "invalid_model_output", detail, item.event.event_id, done
                    )
                ]
                continue
            except Exception as exc:
                per_record[item.index] = [
                    self._admit.internal(
                        item.record, item.event.event_id, exc, "routing its verdict", done
                    )
                ]
                continue
            done.outcomes[verdict.decision.value] += 1
            done.verdicts.append(
                VerdictFacts(
                    verdict.model_version,
                    verdict.decision.value,
                    verdict.generator,
                    verdict.p_ai,
                    item.event.source,
                    item.cached,
                )
            )
            if item.event.produced_at is not None:
                done.produced_at.append(item.event.produced_at)
            log.debug(
                "verdict",
                **where(item.record),
                event_id=item.event.event_id,
                decision=verdict.decision.value,
                cached=item.cached,
            )
        scored = [i for i in misses if i.score is not None]
        stored = {i.suffix: replace(i.score, evidence=tuple(i.evidence)) for i in scored if i.score}
        self._cache.store(list(stored.items()))
        if self._evidence is not None:
            self._evidence.remember(
                [
                    (i.hashed, i.suffix, i.score.model_version)
                    for i in scored
                    if i.hashed and i.score
                ]
            )
        # Every output of one event carries one child of the event's trace.
        done.outputs = []
        for record, outs in zip(batch.records, per_record, strict=True):
            headers = traced(record)
            done.outputs += [replace(out, headers=headers) for out in outs]
        return done

    def _examine_and_send(
        self,
        unanswered: list[Item],
        version: str | None,
        generators: tuple[str, ...],
        scoring: Scoring,
        done: Processed,
    ) -> list[Item]:
        """Examine the misses a request at a time, sending each request's misses to ``scoring``
        once examined; returns them, the first of each distinct input only (a batch often holds
        the same image more than once)."""
        firsts: dict[str, Item] = {}
        step = self._settings.worker.request_items
        for start in range(0, len(unanswered), step):
            chunk = unanswered[start : start + step]
            t = time.monotonic()
            self._examine(chunk, version, generators, done)
            done.evidence_s += time.monotonic() - t
            new = []
            for item in chunk:
                if _needs_model(item) and item.suffix not in firsts:
                    firsts[item.suffix] = item
                    new.append(item)
            scoring.add([i.data for i in new], [i.event.caption for i in new])
        return list(firsts.values())

    def _examine(
        self,
        misses: list[Item],
        version: str | None,
        generators: tuple[str, ...],
        done: Processed,
    ) -> None:
        """The evidence stage (:mod:`worker.evidence.stage`) on the misses: near-duplicates
        answered from the cache, and the signals of the rest."""
        if self._evidence is None or not misses:
            return
        pairs = [(i.data, i.suffix) for i in misses]
        found = self._evidence.examine(pairs, version, generators=generators)
        skip = self._settings.evidence.skip_model_when_proven
        for item, f in zip(misses, found, strict=True):
            item.evidence, item.hashed = f.evidence, f.hashed
            item.human, item.near_duplicate_of = f.human, f.near_duplicate_of
            if f.reused is not None:
                item.score, item.cached = f.reused, True
                item.evidence = list(f.reused.evidence)
            done.near_duplicates_reused += f.near_duplicate_of is not None
            item.proven = (
                skip
                and item.human is None
                and item.score is None
                and proven(item.evidence, self._settings.evidence)
            )
            done.evidence.update((e.kind, e.strength) for e in item.evidence)
            done.generators.update(e.generator for e in item.evidence if e.generator)
            done.evidence_ignored.update(f.ignored)
            if f.ignored:
                log.info(
                    "evidence_ignored",
                    **where(item.record),
                    event_id=item.event.event_id,
                    reasons=f.ignored,
                )

    def _answer(
        self,
        misses: list[Item],
        firsts: list[Item],
        answers: list[Score | Rejected],
        per_record: list[list[Output]],
        done: Processed,
        canary: CanaryState | None,
    ) -> None:
        """Give each miss the answer to its input (``firsts``, in order, were scored). The
        canary's slice is scored by both versions and answered by the candidate."""
        if not firsts:
            return
        if self._canary is not None and canary is not None:
            answers, done.canary = self._canary.answer(
                canary,
                [(i.data, i.event.caption, i.event.source) for i in firsts],
                [i.canary for i in firsts],
                answers,
            )
        by_suffix = {i.suffix: a for i, a in zip(firsts, answers, strict=True)}
        for item in misses:
            answer = by_suffix[item.suffix]
            if isinstance(answer, Rejected):
                per_record[item.index] = [
                    self._admit.reject(
                        item.record, answer.reason, answer.detail, item.event.event_id, done
                    )
                ]
            else:
                item.score = answer
                item.evidence = [*item.evidence, *answer.evidence]  # read by the server


def _needs_model(item: Item) -> bool:
    """Neither the cache, a reviewer nor the evidence answered ``item``."""
    return item.score is None and item.human is None and not item.proven


def _ms_since(start: float) -> float:
    return (time.monotonic() - start) * 1000

"""The worker's side of a canary (:mod:`schemas.canary`): follow the state in Redis, answer the
slice's cache misses with the candidate version, and count how it compared with the default.

Every cache miss is scored by the default version as before; the misses in the slice are also
scored by the candidate, whose answer becomes the verdict (it names the candidate's version and
is cached in the candidate's namespace). Both answers of a slice item are compared under the
worker's bands for the event's source: whether the decisions agree, each version's p_ai, and
whether each would send the item to review. The comparison is counted in Redis once the batch is
committed, so every worker adds to one tally. The cost: the slice's misses are scored twice.

When the candidate cannot answer (not loaded, unregistered by an abort a worker has not seen
yet, the server refusing it), the slice is answered by the default version for that batch, with
one ``canary_unavailable`` warning: a canary never holds events back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from schemas import Decision
from schemas.canary import CanaryError, CanaryState, canary_key, stats_key
from schemas.decision import decide
from schemas.settings import Settings
from serving.client.http import ModelInfo
from serving.client.transport import ServingRequestError, ServingUnavailable
from worker.cache import VerdictCache
from worker.score import Score
from worker.scorer import Rejected, Scorer

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Compared:
    """Both versions' answers on one slice item, as the tally keeps them."""

    version: str
    agreed: bool
    review_default: bool
    review_candidate: bool
    p_ai_default: float
    p_ai_candidate: float


class Canary:
    """Follows the canary in Redis (re-read every ``worker.canary_refresh_s``)."""

    def __init__(
        self,
        settings: Settings,
        cache: VerdictCache,
        scorer: Scorer,
        on_change: Callable[[CanaryState | None], None] | None = None,
    ) -> None:
        """``on_change`` is told each change of the canary (None: it ended)."""
        self._settings = settings
        self._on_change = on_change
        self._cache = cache
        self._scorer = scorer
        self._key = canary_key(settings.redis.key_prefix)
        self._state: CanaryState | None = None
        self._read_at = float("-inf")
        self._models: dict[str, ModelInfo] = {}
        self._retry_at = float("-inf")
        self._warned: str | None = None

    def current(self) -> CanaryState | None:
        """The canary in force, or None. While Redis cannot be read the last state stands."""
        now = time.monotonic()
        if now - self._read_at < self._settings.worker.canary_refresh_s:
            return self._state
        self._read_at = now
        raw = self._cache.guarded("read the canary", lambda: self._cache.client.get(self._key))
        if raw is None and not self._cache.available:
            return self._state
        state = None
        if raw is not None:
            try:
                state = CanaryState.from_json(raw)  # type: ignore[arg-type]
            except CanaryError as err:
                log.warning("canary_unreadable", key=self._key, error=str(err))
        if state != self._state:
            log.info(
                "canary_changed",
                version=state.version if state else None,
                percent=state.percent if state else None,
            )
            self._state = state
            if self._on_change is not None:
                self._on_change(state)
        return state

    def model(self, state: CanaryState) -> ModelInfo | None:
        """The candidate's description, or None when it cannot be had now."""
        info = self._models.get(state.version)
        if info is not None or time.monotonic() < self._retry_at:
            return info
        try:
            info = self._scorer.describe(state.version)
        except (ServingUnavailable, ServingRequestError) as exc:
            self._unavailable(state, exc)
            return None
        if info.version != state.version:
            self._unavailable(state, ValueError(f"it describes itself as {info.version}"))
            return None
        self._models = {state.version: info}
        return info

    def answer(
        self,
        state: CanaryState,
        items: Sequence[tuple[bytes, str | None, str | None]],
        chosen: Sequence[bool],
        defaults: Sequence[Score | Rejected],
    ) -> tuple[list[Score | Rejected], list[Compared]]:
        """The answers to give: the candidate's for the ``chosen`` items it scored, the default's
        for the others; and the comparison of both on every item both scored. ``items`` are
        (image, caption, source)."""
        answers = list(defaults)
        picked = [i for i, take in enumerate(chosen) if take]
        if not picked:
            return answers, []
        try:
            candidate = self._scorer.score(
                [items[i][0] for i in picked], [items[i][1] for i in picked], state.version
            )
        except (ServingUnavailable, ServingRequestError) as exc:
            self._unavailable(state, exc)
            return answers, []
        compared = []
        for index, answer in zip(picked, candidate, strict=True):
            default = defaults[index]
            if not isinstance(answer, Score) or answer.model_version != state.version:
                continue  # the default's answer stands
            answers[index] = answer
            if isinstance(default, Score):
                compared.append(self._compare(state.version, default, answer, items[index][2]))
        return answers, compared

    def record(self, compared: Sequence[Compared]) -> None:
        """Add a committed batch's comparisons to the shared tally (skipped if Redis fails)."""
        if not compared:
            return
        prefix = self._settings.redis.key_prefix

        def write() -> None:
            pipe = self._cache.client.pipeline(transaction=False)
            for c in compared:
                key = stats_key(prefix, c.version)
                pipe.hincrby(key, "items", 1)
                pipe.hincrby(key, "agreed", int(c.agreed))
                pipe.hincrby(key, "review_default", int(c.review_default))
                pipe.hincrby(key, "review_candidate", int(c.review_candidate))
                pipe.hincrbyfloat(key, "p_ai_default", c.p_ai_default)
                pipe.hincrbyfloat(key, "p_ai_candidate", c.p_ai_candidate)
                pipe.hincrbyfloat(key, "abs_shift", abs(c.p_ai_candidate - c.p_ai_default))
            pipe.execute()

        self._cache.guarded("count the canary comparison", write)

    def _compare(
        self, version: str, default: Score, candidate: Score, source: str | None
    ) -> Compared:
        bands = self._settings.worker.bands_for(source)
        d, c = decide(default.p_ai, bands), decide(candidate.p_ai, bands)
        return Compared(
            version=version,
            agreed=d is c,
            review_default=d is Decision.NEEDS_REVIEW,
            review_candidate=c is Decision.NEEDS_REVIEW,
            p_ai_default=default.p_ai,
            p_ai_candidate=candidate.p_ai,
        )

    def _unavailable(self, state: CanaryState, exc: Exception) -> None:
        """Answer the slice with the default for a while (``canary_refresh_s``), and say so once
        per candidate."""
        self._models.pop(state.version, None)
        self._retry_at = time.monotonic() + self._settings.worker.canary_refresh_s
        if self._warned != state.version:
            log.warning(
                "canary_unavailable",
                version=state.version,
                problem=f"{type(exc).__name__}: {exc}",
                meanwhile="the default version answers the slice",
            )
            self._warned = state.version

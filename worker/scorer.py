"""Scoring cache misses on the model server, through ``serving.client.http`` only.

Tracks the served model (name, version, whether it reads captions) and turns the client's
per-item answers into :class:`~worker.score.Score` or :class:`Rejected`.
``ServingUnavailable`` is not caught here: the loop pauses and retries the whole batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from schemas.settings import WorkerSettings
from serving.client.http import ModelInfo, ServingClient
from serving.client.transport import ServingRequestError, ServingUnavailable
from serving.client.wire import ItemError
from worker.score import Score

log = structlog.get_logger(__name__)


class ServerFailedItems(ServingUnavailable):
    """The model server answered but failed on some items: retried like an outage, and, when it
    keeps failing on the same ones, they are the suspects."""


SERVER_FAULTS = frozenset({"prediction_failed"})
"""Item error reasons that say the model server failed, not that the item is bad."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """The server refused one item; it goes to the DLQ with ``reason``."""

    reason: str
    detail: str


class Scorer:
    """Scores images with the served model and knows which model version that is."""

    def __init__(
        self,
        client: ServingClient,
        settings: WorkerSettings,
        on_model: Callable[[ModelInfo], None] | None = None,
    ) -> None:
        """``on_model`` is told the served model when it is first learnt and when it changes."""
        self._client = client
        self._settings = settings
        self._on_model = on_model
        self._info: ModelInfo | None = None
        self._info_at = float("-inf")

    def model(self) -> ModelInfo:
        """The served model, re-read at most every ``model_refresh_s``.

        While the server is unavailable the last known model is returned (cache hits need no
        server); ServingUnavailable is raised only when no model has been seen yet.
        """
        if self._info is None or time.monotonic() - self._info_at >= self._settings.model_refresh_s:
            try:
                info = self._client.model_info()
            except ServingUnavailable:
                if self._info is None:
                    raise
                return self._info
            previous, self._info, self._info_at = self._info, info, time.monotonic()
            if previous is not None and info.version != previous.version:
                log.info("model_changed", previous=previous.version, version=info.version)
            if self._on_model is not None and (
                previous is None or info.version != previous.version
            ):
                self._on_model(info)
        return self._info

    def describe(self, version: str) -> ModelInfo:
        """What ``version`` of the served model is (a canary's candidate), read now."""
        return self._client.model_info(version)

    def score(
        self,
        images: Sequence[bytes],
        captions: Sequence[str | None],
        version: str | None = None,
    ) -> list[Score | Rejected]:
        """One answer per image, in order, by ``version`` (None: the default version)."""
        items = list(zip(images, captions, strict=True))
        if not items:
            return []
        try:
            answers: Sequence[object] = self._client.predict_many(
                items,
                request_items=self._settings.request_items,
                max_in_flight=self._settings.max_in_flight,
                version=version,
            )
        except ServingRequestError as exc:
            # A whole request was refused: find the item at fault by asking one at a time.
            log.warning("serving_request_rejected", status=exc.status, items=len(items))
            answers = [self._one(item, version) for item in items]
        failed = [a for a in answers if isinstance(a, ItemError) and a.reason in SERVER_FAULTS]
        if failed:
            # The server, not the item, is at fault (out of memory, a broken worker): retry the
            # batch later like an outage rather than dead-letter good events.
            raise ServerFailedItems(
                f"the model server failed {len(failed)} item(s): {failed[0].detail}",
                retry_after=1.0,
            )
        scores = [self._convert(a) for a in answers]
        if version is None:
            self._notice_version(scores)
        return scores

    def _one(self, item: tuple[bytes, str | None], version: str | None) -> object:
        try:
            return self._client.predict([item], version=version)[0]
        except ServingRequestError as exc:
            return Rejected("serving_rejected", f"the model server refused the item: {exc}")

    @staticmethod
    def _convert(answer: object) -> Score | Rejected:
        if isinstance(answer, Rejected):
            return answer
        if isinstance(answer, ItemError):
            return Rejected(answer.reason, answer.detail)
        return Score.of(answer)  # type: ignore[arg-type]

    def _notice_version(self, scores: Sequence[Score | Rejected]) -> None:
        # A response from another version means a switch happened: re-read the model info now.
        if self._info is None:
            return
        if any(isinstance(s, Score) and s.model_version != self._info.version for s in scores):
            self._info_at = float("-inf")

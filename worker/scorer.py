"""Scoring cache misses on the model server, through ``serving.client.http`` only.

Tracks the served model (name, version, whether it reads captions) and turns the client's
per-item answers into :class:`~worker.score.Score` or :class:`Rejected`.
``ServingUnavailable`` is not caught here: the loop pauses and retries the whole batch.

A batch's requests go out while the batch is still being prepared (:class:`Scoring`): each
full request of ``worker.request_items`` is sent, on one of ``worker.max_in_flight`` threads,
as soon as its items are known, so the model server works while the worker hashes the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import structlog

from schemas.settings import WorkerSettings
from serving.client.http import ModelInfo, ServingClient
from serving.client.transport import ServingRequestError, ServingUnavailable
from serving.client.wire import ItemError
from worker.score import Score

log = structlog.get_logger(__name__)


Items = list[tuple[bytes, str | None]]
"""Images and their captions."""


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
        self._pool: ThreadPoolExecutor | None = None

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
        with self.begin(version) as scoring:
            scoring.add(images, captions)
            return scoring.answers()

    def begin(self, version: str | None = None) -> Scoring:
        """A batch's scoring by ``version``: add items as they are ready, then ask the answers."""
        return Scoring(self, version, self._settings.request_items)

    def close(self) -> None:
        """Stop the request threads (requests in flight finish first)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _send(self, items: Items, version: str | None) -> Future[list[object]]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self._settings.max_in_flight, thread_name_prefix="aigis-scoring"
            )
        return self._pool.submit(self._request, items, version)

    def _request(self, items: Items, version: str | None) -> list[object]:
        """The answers to one request's items (more than one request when they are too large
        for one)."""
        try:
            return list(
                self._client.predict_many(
                    items,
                    request_items=self._settings.request_items,
                    max_in_flight=1,
                    version=version,
                )
            )
        except ServingRequestError as exc:
            # A whole request was refused: find the item at fault by asking one at a time.
            log.warning("serving_request_rejected", status=exc.status, items=len(items))
            return [self._one(item, version) for item in items]

    def _finish(self, answers: Sequence[object], version: str | None) -> list[Score | Rejected]:
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


class Scoring:
    """One batch's requests to the model server, sent while the batch is still being prepared.

    :meth:`add` sends every full request of ``request_items`` at once (at most ``max_in_flight``
    run at a time; the others queue); :meth:`answers` sends what is left, waits, and returns one
    answer per item added, in order. Once a request has failed no other is sent and
    :meth:`answers` raises that failure. Use it as a context manager: leaving the block by an
    exception cancels the queued requests and waits for those in flight, so none outlives its
    batch.
    """

    def __init__(self, scorer: Scorer, version: str | None, request_items: int) -> None:
        self._scorer = scorer
        self._version = version
        self._size = request_items
        self._waiting: Items = []
        self._sent: list[Future[list[object]]] = []
        self.started: float | None = None
        """When the first request was sent (None while none was)."""

    def __enter__(self) -> Scoring:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self._cancel()

    def add(self, images: Sequence[bytes], captions: Sequence[str | None]) -> None:
        self._waiting += zip(images, captions, strict=True)
        while len(self._waiting) >= self._size:
            self._send(self._waiting[: self._size])
            del self._waiting[: self._size]

    def answers(self) -> list[Score | Rejected]:
        if self._waiting:
            self._send(self._waiting)
            self._waiting = []
        wait(self._sent, return_when=FIRST_EXCEPTION)
        failed = self._failure()
        if failed is not None:
            failed.result()  # raises its failure; leaving the ``with`` block cancels the rest
        answers = [answer for request in self._sent for answer in request.result()]
        return self._scorer._finish(answers, self._version)

    def _send(self, items: Items) -> None:
        if self._failure() is not None:
            return  # answers() raises that failure; these items are never needed
        if self.started is None:
            self.started = time.monotonic()
        request = self._scorer._send(list(items), self._version)
        self._sent.append(request)
        request.add_done_callback(self._on_done)

    def _on_done(self, request: Future[list[object]]) -> None:
        """A failed request stops the queued ones (on the thread that ran it)."""
        if not request.cancelled() and request.exception() is not None:
            for queued in list(self._sent):
                queued.cancel()

    def _failure(self) -> Future[list[object]] | None:
        """The first request that ended in a failure, if one has."""
        for request in list(self._sent):
            if request.done() and not request.cancelled() and request.exception() is not None:
                return request
        return None

    def _cancel(self) -> None:
        for request in self._sent:
            request.cancel()
        wait(self._sent)

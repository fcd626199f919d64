"""A batch's requests go to the model server as their items are added (worker.scorer.Scoring),
and their answers come back in order; after a failure no other request is sent.

The first tests run the concurrency on a client that answers from each item's number (so that
order, retries and failures are exact); the last ones run on real TorchServe.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Sequence
from types import SimpleNamespace

import pytest

from schemas.settings import Settings, WorkerSettings
from serving.client.http import ServingClient
from serving.client.transport import ServingRequestError, ServingUnavailable
from serving.client.wire import ItemError
from worker.score import Score
from worker.scorer import Rejected, Scorer, ServerFailedItems

Images = list[tuple[bytes, str | None]]


class NumberedClient:
    """Answers item ``b"7"`` with p_ai 0.07, after a short random wait (requests end out of
    order); ``refuse`` items make their request a 400, ``down`` ones make it fail like an
    outage, ``broken`` ones come back as the server's own failure. Records each request."""

    def __init__(
        self,
        *,
        refuse: frozenset[int] = frozenset(),
        down: frozenset[int] = frozenset(),
        broken: frozenset[int] = frozenset(),
    ) -> None:
        self.refuse, self.down, self.broken = refuse, down, broken
        self.requests: list[list[int]] = []
        self._lock = threading.Lock()

    def predict_many(
        self,
        items: Sequence[tuple[bytes, str | None]],
        *,
        request_items: int,
        max_in_flight: int,
        version: str | None = None,
    ) -> list[object]:
        numbers = [int(image) for image, _ in items]
        with self._lock:
            self.requests.append(numbers)
        time.sleep(random.uniform(0, 0.02))
        if self.down & set(numbers):
            raise ServingUnavailable("the model server does not answer", retry_after=1.0)
        if self.refuse & set(numbers):
            raise ServingRequestError(400, "refused")
        return [self._answer(n) for n in numbers]

    def predict(
        self, items: Sequence[tuple[bytes, str | None]], *, version: str | None = None
    ) -> list[object]:
        return self.predict_many(items, request_items=1, max_in_flight=1, version=version)

    def _answer(self, n: int) -> object:
        if n in self.broken:
            return ItemError("prediction_failed", "out of memory")
        return SimpleNamespace(
            p_ai=n / 100,
            generator_probs={"real": 1.0},
            confidence_a=0.5,
            confidence_b=0.5,
            model_name="detector",
            model_version="1",
            signals=(),
        )


def numbered(count: int) -> tuple[list[bytes], list[str | None]]:
    return [str(n).encode() for n in range(count)], [None] * count


def scorer(client: NumberedClient, request_items: int, max_in_flight: int) -> Scorer:
    settings = WorkerSettings(request_items=request_items, max_in_flight=max_in_flight)
    return Scorer(client, settings)  # type: ignore[arg-type]


def test_answers_follow_the_items_whatever_order_the_requests_end_in() -> None:
    s = scorer(NumberedClient(), request_items=3, max_in_flight=3)
    try:
        with s.begin() as scoring:
            for start in (0, 2, 7):  # added in pieces, as the pipeline examines them
                images, captions = numbered(start + 5)
                scoring.add(images[start : start + 5], captions[start : start + 5])
            answers = scoring.answers()
    finally:
        s.close()
    p_ai = [a.p_ai for a in answers if isinstance(a, Score)]
    assert p_ai == [n / 100 for n in (0, 1, 2, 3, 4, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)]


def test_once_a_request_fails_no_other_is_sent() -> None:
    client = NumberedClient(down=frozenset({0}))
    s = scorer(client, request_items=1, max_in_flight=1)
    try:
        with s.begin() as scoring:
            scoring.add(*numbered(8))
            with pytest.raises(ServingUnavailable):
                scoring.answers()
    finally:
        s.close()
    assert client.requests == [[0]]


def test_a_refused_request_is_asked_again_item_by_item_and_only_its_item_is_rejected() -> None:
    client = NumberedClient(refuse=frozenset({4}))
    s = scorer(client, request_items=3, max_in_flight=2)
    try:
        answers = s.score(*numbered(9))
    finally:
        s.close()
    assert [type(a) for a in answers] == [Score] * 4 + [Rejected] + [Score] * 4
    assert sorted(client.requests) == [[0, 1, 2], [3], [3, 4, 5], [4], [5], [6, 7, 8]]


def test_a_server_failure_on_one_item_holds_the_whole_batch() -> None:
    s = scorer(NumberedClient(broken=frozenset({5})), request_items=3, max_in_flight=2)
    try:
        with pytest.raises(ServerFailedItems):
            s.score(*numbered(9))
    finally:
        s.close()


def scorer_of(settings: Settings, client: ServingClient) -> Scorer:
    worker = settings.worker.model_copy(update={"request_items": 3, "max_in_flight": 2})
    return Scorer(client, worker)


@pytest.mark.integration
def test_requests_leave_as_they_fill_and_the_answers_keep_the_items_order(
    worker_settings: Settings, smoke_images: Images
) -> None:
    images = smoke_images[:10]
    s = worker_settings
    with ServingClient(s.serving, key_file=s.serving_key_file) as client:
        alone = [client.predict([item])[0] for item in images]
        scorer = scorer_of(s, client)
        try:
            with scorer.begin() as scoring:
                scoring.add([images[0][0], images[1][0]], [images[0][1], images[1][1]])
                assert scoring.started is None  # less than one request: nothing sent yet
                rest = images[2:]
                scoring.add([i for i, _ in rest], [c for _, c in rest])
                assert scoring.started is not None  # full requests went out at once
                answers = scoring.answers()
        finally:
            scorer.close()
    assert all(isinstance(a, Score) for a in answers)
    got = [a.p_ai for a in answers if isinstance(a, Score)]
    assert got == pytest.approx([one.p_ai for one in alone], abs=1e-5)  # type: ignore[union-attr]


@pytest.mark.integration
def test_a_server_that_does_not_answer_fails_the_whole_batch(
    worker_settings: Settings, smoke_images: Images
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    serving = worker_settings.serving.model_copy(
        update={"inference_url": f"http://127.0.0.1:{port}", "retries": 0}
    )
    with ServingClient(serving, key_file=worker_settings.serving_key_file) as client:
        scorer = scorer_of(worker_settings, client)
        try:
            with scorer.begin() as scoring:
                images = smoke_images[:10]
                scoring.add([i for i, _ in images], [c for _, c in images])
                with pytest.raises(ServingUnavailable):
                    scoring.answers()
        finally:
            scorer.close()

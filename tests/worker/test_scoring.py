"""A batch's requests go to TorchServe as their items are added (worker.scorer.Scoring), and
their answers come back in order; a server that is down fails the batch whole (real TorchServe)."""

from __future__ import annotations

import socket

import pytest

from schemas.settings import Settings
from serving.client.http import ServingClient
from serving.client.transport import ServingUnavailable
from worker.score import Score
from worker.scorer import Scorer

pytestmark = pytest.mark.integration

Images = list[tuple[bytes, str | None]]


def scorer_of(settings: Settings, client: ServingClient) -> Scorer:
    worker = settings.worker.model_copy(update={"request_items": 3, "max_in_flight": 2})
    return Scorer(client, worker)


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

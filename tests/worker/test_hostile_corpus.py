"""The hostile corpus through real Kafka, Redis and TorchServe in one run: every record ends as
exactly one verdict or one dead letter with the expected reason, and normal traffic published
after it is all scored."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from schemas.settings import Settings
from tests.streams import drain, events_for, publish_events, publish_raw, run_worker
from tests.worker.hostile import VERDICT, Case, image_cases, message_cases

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Images = list[tuple[bytes, str | None]]


def corpus() -> list[Case]:
    good = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 30)).save(good, "PNG")
    return [*message_cases(good.getvalue()), *image_cases()]


def test_the_hostile_corpus_ends_in_one_outcome_each_and_stops_nothing(
    worker_settings: Settings, smoke_images: Images
) -> None:
    cases = corpus()
    assert len(cases) >= 35
    publish_raw(worker_settings, [case.value for case in cases])
    normal = publish_events(worker_settings, events_for(smoke_images[:20] * 5, "normal"))
    assert len(normal) == 100
    run_worker(worker_settings, idle_exit_s=5.0)

    letters = drain(worker_settings, "dlq", expect=sum(c.outcome != VERDICT for c in cases))
    verdicts = drain(worker_settings, "verdicts", expect=len(normal))
    # publish_raw keys record i "raw-i": that is how each outcome finds its case.
    outcome: dict[str, list[str]] = {}
    for letter in letters:
        key = base64.b64decode(letter.original_key_b64 or "").decode()
        outcome.setdefault(key, []).append(letter.reason)
    by_event = {v.event_id for v in verdicts}
    for i, case in enumerate(cases):
        key = f"raw-{i}"
        if case.outcome == VERDICT:
            assert key not in outcome, (case.name, outcome.get(key))
        else:
            assert outcome.get(key) == [case.outcome], (case.name, outcome.get(key))
    legal = [c for c in cases if c.outcome == VERDICT]
    assert len(verdicts) == len(normal) + len(legal)
    assert set(normal) <= by_event

"""The queue's feed: review items from ``topics.review`` into the console's database, on the
stream runtime.

Each batch is written to the database (one transaction per item) before its offsets are
committed, so an item is never lost; a batch read again after a crash finds its items already
queued (by event id) and adds nothing. An unreadable record goes to the DLQ.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import structlog
from sqlalchemy.exc import IntegrityError, OperationalError

from aigis.console.queue import ReviewQueue
from schemas.codec import decode
from schemas.errors import SchemaError
from schemas.messages import ReviewItem
from schemas.settings import Settings
from worker.runtime.app import StreamRuntime
from worker.runtime.batch import Batch
from worker.runtime.checkpoint import Output, dead_letter
from worker.runtime.handler import DependencyDownError, Handler, StreamConfig

log = structlog.get_logger(__name__)


class QueueFeed(Handler):
    def __init__(self, settings: Settings, queue: ReviewQueue) -> None:
        self._settings = settings
        self._queue = queue
        self.added = 0
        config = StreamConfig(
            name="review_console",
            group_id=settings.review.group_id,
            topics=(settings.topics.review,),
            max_records=64,
            batch_timeout_ms=200,
            session_timeout_ms=settings.review.session_timeout_ms,
        )
        self.runtime = StreamRuntime(settings, config, self)

    def run(self, stop: threading.Event) -> None:
        self.runtime.run(stop)

    def handle(self, batch: Batch) -> Sequence[Output] | None:
        outputs: list[Output] = []
        for record in batch.records:
            try:
                item = decode(ReviewItem, record.value or b"")
            except SchemaError as err:
                log.warning("review_item_rejected", offset=record.offset, reason=err.reason)
                outputs.append(dead_letter(record, err.reason, str(err), self._settings))
                continue
            try:
                added = self._queue.add(item)
            except IntegrityError:
                added = False  # another replica queued the same event a moment ago
            except OperationalError as exc:
                raise DependencyDownError(
                    f"the review database is unavailable ({type(exc).__name__})", retry_after=2.0
                ) from exc
            self.added += int(added)
        return outputs

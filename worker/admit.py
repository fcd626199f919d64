"""The first steps of a micro-batch: records to events, events to image bytes and hashes, and
the probe of the images the cache could not answer; and the dead letter of a record that fails
any step.

The probe (:func:`serving.imageio.probe_image`: a known format within the pixel limits) runs
after the cache lookup, on the images the cache and the reviewers did not answer: an image whose
exact bytes have a cached score or a human label passed the probe when it was first scored, and
re-reading its header (a PNG's, to find its orientation, means decoding it) is most of what a
cache hit would cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from schemas import ImageEvent, SchemaError, decode
from schemas.fields import ConsumedRecord
from schemas.limits import MAX_IMAGE_PIXELS
from schemas.messages import Evidence, NearDuplicate
from schemas.overrides import HumanLabel
from schemas.settings import Settings
from serving.errors import ImageError
from serving.imageio import probe_image
from worker.cache import sha256_hex
from worker.fetch import Fetcher, FetchError
from worker.logged import load_context, where
from worker.neardup import Hashed
from worker.processed import DLQ, Processed
from worker.runtime.batch import Batch
from worker.runtime.checkpoint import Output, dead_letter
from worker.runtime.handler import where_raised
from worker.score import Score

log = structlog.get_logger(__name__)


@dataclass
class Item:
    """An event that passed validation, on its way through the batch."""

    index: int
    record: ConsumedRecord
    event: ImageEvent
    data: bytes = b""
    sha256: str = ""
    suffix: str = ""
    score: Score | None = None
    cached: bool = False
    evidence: list[Evidence] = field(default_factory=list)
    hashed: Hashed | None = None
    near_duplicate_of: NearDuplicate | None = None
    human: HumanLabel | None = None
    proven: bool = False
    """Decided by its provenance alone, and not to be scored."""
    canary: bool = False
    """In the slice of a canary whose candidate can answer."""


class Admission:
    """Validates, loads and probes the events of a batch; dead-letters what fails.

    ``per_record[i]`` receives the dead letter of record ``i``; ``done`` counts it."""

    def __init__(self, settings: Settings, fetcher: Fetcher) -> None:
        self._settings = settings
        self._fetcher = fetcher

    def validate(self, batch: Batch, per_record: list[list[Output]], done: Processed) -> list[Item]:
        """The records that decode as image events."""
        items: list[Item] = []
        for index, record in enumerate(batch.records):
            try:
                event = decode(ImageEvent, record.value or b"")
            except SchemaError as err:
                per_record[index] = [self.reject(record, err.reason, str(err), None, done)]
                continue
            except Exception as exc:
                per_record[index] = [self.internal(record, None, exc, "decoding it", done)]
                continue
            items.append(Item(index, record, event))
        return items

    def load(
        self, items: list[Item], per_record: list[list[Output]], done: Processed
    ) -> list[Item]:
        """The items whose image could be had (within ``worker.max_image_bytes``), with their
        bytes and hash; the others are dead-lettered."""
        loads = self._fetcher.fetch_all([i.event for i in items])
        fetched = dict(zip(map(id, items), loads, strict=True))

        def hashed(item: Item) -> None:
            data = fetched[id(item)]
            if isinstance(data, FetchError):
                raise data
            item.data, item.sha256 = data, sha256_hex(data)

        return self._keep(items, hashed, per_record, done)

    def probe(
        self, items: list[Item], per_record: list[list[Output]], done: Processed
    ) -> list[Item]:
        """The items whose image is of a known format within the size limits; the others are
        dead-lettered."""
        limit = self._settings.worker.max_image_bytes

        def probed(item: Item) -> None:
            probe_image(item.data, max_bytes=limit, max_pixels=MAX_IMAGE_PIXELS)

        return self._keep(items, probed, per_record, done)

    def _keep(
        self,
        items: list[Item],
        check: Callable[[Item], None],
        per_record: list[list[Output]],
        done: Processed,
    ) -> list[Item]:
        """The items ``check`` passes. One it fails (FetchError, ImageError) is dead-lettered
        with the failure's reason; one it makes raise anything else, as ``internal_error``."""
        kept: list[Item] = []
        for item in items:
            event_id = item.event.event_id
            try:
                check(item)
            except (FetchError, ImageError) as err:
                context = load_context(item.event, err)
                per_record[item.index] = [
                    self.reject(item.record, err.reason, err.detail, event_id, done, **context)
                ]
                continue
            except Exception as exc:
                per_record[item.index] = [
                    self.internal(item.record, event_id, exc, "reading its image", done)
                ]
                continue
            kept.append(item)
        return kept

    def internal(
        self,
        record: ConsumedRecord,
        event_id: str | None,
        exc: Exception,
        step: str,
        done: Processed,
    ) -> Output:
        """The dead letter of a record that made a step raise: the exception's type only (its
        text may quote the input)."""
        log.error(
            "record_failed",
            **where(record),
            step=step,
            error=type(exc).__name__,
            raised_at=where_raised(exc),
        )
        detail = f"{type(exc).__name__} while {step}; the service's log has the details"
        return self.reject(record, "internal_error", detail, event_id, done)

    def reject(
        self,
        record: ConsumedRecord,
        reason: str,
        detail: str,
        event_id: str | None,
        done: Processed,
        **context: object,
    ) -> Output:
        log.warning(
            "dead_letter",
            **where(record),
            event_id=event_id,
            reason=reason,
            detail=detail,
            **context,
        )
        done.outcomes[DLQ] += 1
        done.dlq_reasons[reason] += 1
        return dead_letter(record, reason, detail, self._settings, event_id)

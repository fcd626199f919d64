"""Turn one Kafka record of the pseudo-label or review-decision topic into a LabelRecord.

Everything that can be wrong with a record raises :class:`RejectedRecordError` with a stable reason,
so the sink can dead-letter it and move on.
"""

from __future__ import annotations

from datetime import datetime

from schemas.codec import decode
from schemas.errors import AigisError, SchemaError
from schemas.messages import PseudoLabel, ReviewDecision
from schemas.settings import TopicSettings
from training.labelstore.records import LabelRecord
from training.labelstore.store import ImageHashMismatchError, LabelStore


class RejectedRecordError(AigisError):
    """A record the store cannot take; ``reason`` is a stable code for the DLQ and metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


def to_record(
    store: LabelStore,
    topics: TopicSettings,
    topic: str,
    value: bytes | None,
    *,
    stored_at: datetime,
) -> LabelRecord:
    """Decode ``value`` from ``topic`` and keep its image (when the store keeps bytes).

    The image blob is written here, before the record's shard: blobs are content-addressed, so
    one written for a record that is never committed is harmless and is reused on redelivery.
    """
    message: PseudoLabel | ReviewDecision
    try:
        if topic == topics.pseudo_labels:
            message = decode(PseudoLabel, value or b"")
        elif topic == topics.review_decisions:
            message = decode(ReviewDecision, value or b"")
        else:
            raise RejectedRecordError("unexpected_topic", f"the sink does not read topic {topic!r}")
    except SchemaError as err:
        raise RejectedRecordError(err.reason, str(err)) from None
    blob = None
    inline = message.inline_bytes()
    if inline is not None:
        try:
            blob = store.put_image(inline, message.image_sha256)
        except ImageHashMismatchError as err:
            raise RejectedRecordError("image_hash_mismatch", str(err)) from None
    if isinstance(message, PseudoLabel):
        return LabelRecord.from_pseudo_label(message, image_blob=blob, stored_at=stored_at)
    return LabelRecord.from_review_decision(message, image_blob=blob, stored_at=stored_at)

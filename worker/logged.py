"""What a worker's log line says about the record it is about: where the record is, and what
a failed load saw. Never the event's content beyond a redacted URI."""

from __future__ import annotations

from schemas import ImageEvent, trace
from schemas.fields import ConsumedRecord
from schemas.uris import redact_uri
from serving.errors import ImageError
from worker.fetch import FetchError


def load_context(event: ImageEvent, err: FetchError | ImageError) -> dict[str, object]:
    """What a failed load adds to the operator's log line: what the loader saw and the URI
    without its query (a pre-signed URL's signature). The dead letter gets neither."""
    if not isinstance(err, FetchError):
        return {}
    return {"cause": err.cause, "uri": redact_uri(event.image_uri) if event.image_uri else None}


def where(record: ConsumedRecord) -> dict[str, object]:
    """Where a log line's record is: its position, and its trace id when the producer sent one."""
    where: dict[str, object] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
    }
    trace_id = trace.trace_id(trace.from_headers(getattr(record, "headers", None)))
    if trace_id is not None:
        where["trace_id"] = trace_id
    return where

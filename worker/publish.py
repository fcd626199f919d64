"""Publishing image events: what ``aigis publish`` sends, reusable by tests and benchmarks.

Sources: one image file, a directory of image files (recursively), a CT2 parquet data set (a
file or a directory of them) or ``smoke`` (the built-in smoke set). Event ids are random
(``uuid4`` hex): publishing the same image twice makes two events, the second answered from the
cache. ``produced_at`` is the moment each event is handed to the producer.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kafka.errors import KafkaError
from pydantic import ValidationError

from schemas import AigisError, ImageEvent, encode
from schemas.codec import schema_error
from schemas.settings import Settings
from worker import kafka as kafka_clients

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


class PublishError(AigisError):
    """A source cannot be published, or the brokers did not take the events."""


@dataclass(frozen=True)
class ImageInput:
    """One image to publish: its bytes (inline) or a URI, and an optional caption."""

    image: bytes | None = None
    uri: str | None = None
    caption: str | None = None


def read_source(
    source: str, *, by_uri: bool = False, caption: str | None = None, split: str = "test"
) -> Sequence[ImageInput] | Iterable[ImageInput]:
    """The images of ``source``; ``caption`` overrides the data set's captions when given."""
    path = Path(source)
    if source != "smoke" and path.is_file() and path.suffix.lower() != ".parquet":
        return [_file_input(path, by_uri, caption)]
    if source != "smoke" and path.is_dir() and not any(path.rglob("*.parquet")):
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise PublishError(
                f"{source} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        return [_file_input(p, by_uri, caption) for p in files]
    if source != "smoke" and not path.exists():
        raise PublishError(
            f"{source} does not exist; give an image, a directory, a parquet data set or 'smoke'"
        )
    if by_uri:
        raise PublishError("--by-uri needs image files; data set images have no URI of their own")
    # Imported here: the data readers are a producer-side tool, never part of the worker.
    from training.data import load_split

    samples = load_split(source, split, normalise=False, require_labels=False)
    return (
        ImageInput(image=s.image, caption=caption if caption is not None else s.caption)
        for s in samples
    )


def _file_input(path: Path, by_uri: bool, caption: str | None) -> ImageInput:
    if by_uri:
        return ImageInput(uri=path.resolve().as_uri(), caption=caption)
    return ImageInput(image=path.read_bytes(), caption=caption)


def make_events(
    inputs: Iterable[ImageInput], count: int | None = None, *, source: str | None = None
) -> Iterator[ImageEvent]:
    """Events for ``inputs``; with ``count``, exactly that many, cycling through the inputs."""
    stream: Iterable[ImageInput] = inputs
    if count is not None:
        pool = list(inputs)
        if not pool:
            raise PublishError("nothing to publish")
        stream = itertools.islice(itertools.cycle(pool), count)
    for item in stream:
        fields: dict[str, object] = {"caption": item.caption, "source": source}
        event_id = uuid.uuid4().hex
        now = datetime.now(UTC)
        try:
            if item.image is not None:
                yield ImageEvent.inline(event_id, item.image, produced_at=now, **fields)
            else:
                yield ImageEvent(event_id=event_id, image_uri=item.uri, produced_at=now, **fields)
        except ValidationError as exc:
            error = schema_error(exc)
            what = item.uri or f"an inline image of {len(item.image or b'')} bytes"
            raise PublishError(f"cannot publish {what}: {error}") from None


def publish(
    settings: Settings,
    events: Iterable[ImageEvent],
    *,
    topic: str | None = None,
    on_sent: Callable[[ImageEvent], None] | None = None,
) -> int:
    """Send ``events`` (key ``event_id``) and wait for every acknowledgement; return how many.

    Raises PublishError naming how many were not acknowledged.
    """
    topic = topic or settings.topics.images
    producer = kafka_clients.producer(settings)
    futures = []
    try:
        for event in events:
            futures.append(
                producer.send(
                    topic,
                    value=encode(event, settings.message_version),
                    key=event.event_id.encode(),
                )
            )
            if on_sent is not None:
                on_sent(event)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)
    failed = 0
    for future in futures:
        try:
            future.get(timeout=0)
        except KafkaError:
            failed += 1
    if failed:
        raise PublishError(
            f"{failed} of {len(futures)} events were not acknowledged by Kafka; publish them again"
        )
    return len(futures)

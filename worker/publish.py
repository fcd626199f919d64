"""Publishing image events: what ``aigis publish`` sends, reusable by tests and benchmarks.

Sources: one image file, a directory of image files (recursively), a CT2 parquet data set (a
file or a directory of them) or ``smoke`` (the built-in smoke set). Every file is probed before
anything is sent (header only, torch-free): a single file that is not an image is refused, and a
directory publishes its images and reports the files it skipped and why. Event ids are random
(``uuid4`` hex): publishing the same image twice makes two events, the second answered from the
cache. ``produced_at`` is the moment each event is handed to the producer. A file's name (or path
under the directory) can travel as the event's ``external_id``, and a manifest line per event ties
what was published to the event id its verdict will carry.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final, Literal

from kafka.errors import KafkaError
from pydantic import TypeAdapter, ValidationError

from schemas import AigisError, ImageEvent, encode, trace
from schemas.codec import schema_error
from schemas.fields import Identifier
from schemas.limits import MAX_ID_CHARS, MAX_INLINE_IMAGE_BYTES
from schemas.settings import Settings
from serving.imageio import MAX_IMAGE_BYTES, ImageError, probe_image
from worker import kafka as kafka_clients

ExternalIdFrom = Literal["name", "path"]
EXTERNAL_ID_FROM: Final[tuple[ExternalIdFrom, ...]] = ("name", "path")
"""``name``: the file's name; ``path``: its path under the published directory."""

_NOT_IN_ID = re.compile(r"[^A-Za-z0-9._:@/+=-]+")
_IDENTIFIER: Final[TypeAdapter[str]] = TypeAdapter(Identifier)


class PublishError(AigisError):
    """A source cannot be published, or the brokers did not take the events."""


@dataclass(frozen=True)
class ImageInput:
    """One image to publish: its bytes (inline) or a URI, an optional caption and external id,
    and the file it was read from (None for a data set's images)."""

    image: bytes | None = None
    uri: str | None = None
    caption: str | None = None
    external_id: str | None = None
    file: str | None = None


@dataclass(frozen=True)
class Skipped:
    """A file of a directory that was not published, and why."""

    file: str
    reason: str


@dataclass(frozen=True)
class Inputs:
    """What a source holds: the images to publish and the files skipped."""

    images: Sequence[ImageInput] | Iterable[ImageInput]
    skipped: tuple[Skipped, ...] = field(default=())
    files: int | None = None
    """How many files a directory held (None for a file or a data set)."""


def read_source(
    source: str,
    *,
    by_uri: bool = False,
    caption: str | None = None,
    split: str = "test",
    external_id_from: ExternalIdFrom | None = None,
) -> Inputs:
    """The images of ``source``; ``caption`` overrides the data set's captions when given.

    Raises PublishError for a single file that is not an image, a directory without one, and
    file names that make no external id (or the same one twice).
    """
    path = Path(source)
    if source != "smoke" and path.is_file() and path.suffix.lower() != ".parquet":
        data, reason = _probe_file(path, by_uri)
        if reason is not None:
            raise PublishError(f"{source} cannot be published: {reason}")
        ident = external_id(path.name, source) if external_id_from else None
        return Inputs([_file_input(path, data, by_uri, caption, ident)])
    if source != "smoke" and path.is_dir() and not any(path.rglob("*.parquet")):
        return _read_directory(path, by_uri, caption, external_id_from)
    if source != "smoke" and not path.exists():
        raise PublishError(
            f"{source} does not exist; give an image, a directory, a parquet data set or 'smoke'"
        )
    if by_uri:
        raise PublishError("--by-uri needs image files; data set images have no URI of their own")
    if external_id_from:
        raise PublishError(
            "--external-id-from needs image files; data set images have no file name"
        )
    # Imported here: the data readers are a producer-side tool, never part of the worker.
    from training.data import load_split

    samples = load_split(source, split, normalise=False, require_labels=False)
    return Inputs(
        ImageInput(image=s.image, caption=caption if caption is not None else s.caption)
        for s in samples
    )


def _read_directory(
    root: Path, by_uri: bool, caption: str | None, external_id_from: ExternalIdFrom | None
) -> Inputs:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    images: list[ImageInput] = []
    skipped: list[Skipped] = []
    owners: dict[str, Path] = {}
    for path in files:
        shown = path.relative_to(root).as_posix()
        data, reason = _probe_file(path, by_uri)
        if reason is not None:
            skipped.append(Skipped(shown, reason))
            continue
        ident = None
        if external_id_from is not None:
            ident = external_id(path.name if external_id_from == "name" else shown, str(path))
            if (other := owners.setdefault(ident, path)) != path:
                raise PublishError(
                    f"{other} and {path} both make the external id {ident!r}; rename one"
                    + (", or use --external-id-from path" if external_id_from == "name" else "")
                )
        images.append(_file_input(path, data, by_uri, caption, ident))
    if not images:
        first = f"; {skipped[0].file}: {skipped[0].reason}" if skipped else ""
        raise PublishError(
            f"{root} holds no image to publish ({_files(len(files))}, none an image{first})"
        )
    return Inputs(images, tuple(skipped), len(files))


def _probe_file(path: Path, by_uri: bool) -> tuple[bytes, str | None]:
    """The file's bytes and None, or why it cannot be published (size first: nothing is read
    from a file that is too large)."""
    try:
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            return b"", f"{_mib(size)} is over the {_mib(MAX_IMAGE_BYTES)} limit of an image"
        if not by_uri and size > MAX_INLINE_IMAGE_BYTES:
            return b"", (
                f"{_mib(size)} is over the {_mib(MAX_INLINE_IMAGE_BYTES)} limit of an inline "
                "image; publish it with --by-uri"
            )
        data = path.read_bytes()
    except OSError as exc:
        return b"", f"cannot be read ({exc.strerror or type(exc).__name__})"
    try:
        probe_image(data)
    except ImageError as exc:
        return b"", f"not an image ({exc.reason}: {exc.detail})"
    return data, None


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def external_id(name: str, what: str) -> str:
    """``name`` made a valid external id: accents dropped, every run of characters an Identifier
    cannot hold replaced by ``_``, leading punctuation removed. Raises PublishError naming
    ``what`` when nothing usable is left or the result is too long."""
    ascii_name = "".join(
        c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c)
    )
    ident = _NOT_IN_ID.sub("_", ascii_name).lstrip("._:@/+=-")
    if not ident:
        raise PublishError(
            f"{what}: {name!r} has no letter or digit to make an external id of; rename it"
        )
    if len(ident) > MAX_ID_CHARS:
        raise PublishError(
            f"{what}: {name!r} makes an external id of {len(ident)} characters, over the "
            f"limit of {MAX_ID_CHARS}; rename it"
        )
    try:
        return _IDENTIFIER.validate_python(ident)
    except ValidationError as exc:  # the pattern above mirrors Identifier's; this guards drift
        raise PublishError(f"{what}: {name!r} makes no valid external id: {exc}") from None


def _file_input(
    path: Path, data: bytes, by_uri: bool, caption: str | None, ident: str | None
) -> ImageInput:
    if by_uri:
        return ImageInput(
            uri=path.resolve().as_uri(), caption=caption, external_id=ident, file=str(path)
        )
    return ImageInput(image=data, caption=caption, external_id=ident, file=str(path))


def make_events(
    inputs: Iterable[ImageInput], count: int | None = None, *, source: str | None = None
) -> Iterator[ImageEvent]:
    """Events for ``inputs``; with ``count``, exactly that many, cycling through the inputs."""
    return (event for _, event in plan_events(inputs, count, source=source))


def plan_events(
    inputs: Iterable[ImageInput], count: int | None = None, *, source: str | None = None
) -> Iterator[tuple[ImageInput, ImageEvent]]:
    """Each event of :func:`make_events` with the input it was made from."""
    stream: Iterable[ImageInput] = inputs
    if count is not None:
        pool = list(inputs)
        if not pool:
            raise PublishError("nothing to publish")
        stream = itertools.islice(itertools.cycle(pool), count)
    for item in stream:
        fields: dict[str, object] = {
            "caption": item.caption,
            "source": source,
            "external_id": item.external_id,
        }
        event_id = uuid.uuid4().hex
        now = datetime.now(UTC)
        try:
            if item.image is not None:
                event = ImageEvent.inline(event_id, item.image, produced_at=now, **fields)
            else:
                event = ImageEvent(event_id=event_id, image_uri=item.uri, produced_at=now, **fields)
        except ValidationError as exc:
            error = schema_error(exc)
            what = item.file or item.uri or f"an inline image of {len(item.image or b'')} bytes"
            raise PublishError(f"cannot publish {what}: {error}") from None
        yield item, event


def manifest_line(item: ImageInput, event: ImageEvent) -> str:
    """One JSON line naming what ``event`` carries: the file (or URI) it was made from, its
    ``event_id`` (what its verdict carries), ``external_id`` and ``source``; ``image_sha256``
    for inline images, the key verdicts and the cache use."""
    line: dict[str, object] = {"file": item.file} if item.file is not None else {}
    if event.image_uri is not None:
        line["uri"] = event.image_uri
    line |= {"event_id": event.event_id, "external_id": event.external_id, "source": event.source}
    if item.image is not None:
        line["image_sha256"] = hashlib.sha256(item.image).hexdigest()
    return json.dumps(line, ensure_ascii=False)


def with_manifest(
    planned: Iterable[tuple[ImageInput, ImageEvent]], out: IO[str]
) -> Iterator[ImageEvent]:
    """The events of ``planned``, writing each one's manifest line once it is handed on."""
    for item, event in planned:
        yield event
        out.write(manifest_line(item, event) + "\n")


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
                    headers=[(trace.HEADER, trace.new().encode())],
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

"""``aigis demo``: the whole pipeline end to end, or (``--round-trip``) one event through Kafka.

The tour itself lives in :mod:`aigis.demo`. The round trip starts the services, publishes an
ImageEvent carrying a generated PNG to the images topic, reads it back with a fresh consumer
group and prints it decoded: a quick check of the infrastructure alone.
"""

from __future__ import annotations

import io
import json
import time
import uuid

import typer
from kafka import TopicPartition

from aigis import devstack
from aigis.cli.common import fail, settings
from schemas import ImageEvent, decode, encode
from schemas.errors import AigisError
from schemas.settings import Settings
from worker import kafka

_SHOWN_B64_CHARS = 48


def register(app: typer.Typer) -> None:
    @app.command(
        help=(
            "Run the pipeline end to end on this machine: Kafka, Redis and TorchServe up; train "
            "the tiny fused detector on the smoke set; export and serve it; start a worker and "
            "the sink; publish the smoke test split and show verdicts; a summary with accuracy, "
            "throughput, latency and cache hits; one retraining cycle; then stop everything."
        )
    )
    def demo(
        keep: bool = typer.Option(
            False, "--keep", help="Leave every service running and say how to stop them."
        ),
        events: int = typer.Option(300, "--events", min=1, max=300, help="Images to publish."),
        reuse_model: bool = typer.Option(
            False, "--reuse-model", help="Skip training when an earlier demo left a model."
        ),
        round_trip: bool = typer.Option(
            False, "--round-trip", help="Only start Kafka and Redis and send one event through."
        ),
    ) -> None:
        loaded = settings()
        if round_trip:
            _round_trip(loaded)
            return
        from aigis.demo import Demo

        tour = Demo(loaded, keep=keep, events=events, reuse_model=reuse_model)
        try:
            tour.run()
        except AigisError as exc:
            fail(f"aigis demo: {exc}")
        finally:
            tour.close()


def _round_trip(loaded: Settings) -> None:
    """Start Kafka and Redis, publish one event and read it back."""
    typer.echo(f"1. services (state dir {loaded.state_dir})")
    try:
        devstack.up(loaded, report=lambda o: typer.echo(f"   {o.name:<7} {o.result}"))
        event = ImageEvent.inline(
            f"demo-{uuid.uuid4().hex[:12]}",
            _gradient_png(),
            caption="a generated colour gradient",
            source="aigis-demo",
        )
        partition, offset = _publish(loaded, event)
        typer.echo(
            f"2. published {event.event_id} to {loaded.topics.images} "
            f"(partition {partition}, offset {offset})"
        )
        group, received = _read_back(loaded, partition, offset)
    except AigisError as exc:
        fail(f"aigis demo: {exc}")
    typer.echo(f"3. read back with the fresh consumer group {group}:")
    typer.echo(json.dumps(_shortened(received), indent=2, ensure_ascii=False))
    if received != event:
        fail("aigis demo: the event read back differs from the one published")
    typer.echo("the event came back intact. Stop the services with: aigis dev down")


def _gradient_png(size: int = 32) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (size, size))
    image.putdata(
        [(x * 255 // size, y * 255 // size, 128) for y in range(size) for x in range(size)]
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _publish(loaded: Settings, event: ImageEvent) -> tuple[int, int]:
    producer = kafka.producer(loaded)
    try:
        sent = producer.send(
            loaded.topics.images, key=event.event_id.encode(), value=encode(event)
        ).get(timeout=30)
    finally:
        producer.close(timeout=5)
    return sent.partition, sent.offset


def _read_back(loaded: Settings, partition: int, offset: int) -> tuple[str, ImageEvent]:
    """Read the record at ``partition``/``offset`` in a new group and commit past it."""
    group = f"aigis-demo-{uuid.uuid4().hex[:8]}"
    consumer = kafka.consumer(loaded, group_id=group)
    where = TopicPartition(loaded.topics.images, partition)
    try:
        consumer.assign([where])
        consumer.seek(where, offset)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for record in consumer.poll(timeout_ms=500).get(where, []):
                if record.offset == offset:
                    consumer.commit()
                    return group, decode(ImageEvent, record.value)
    finally:
        consumer.close(autocommit=False)
    raise AigisError(
        f"the event at {loaded.topics.images}/{partition}@{offset} did not come back within 30 s; "
        "check the broker with `aigis dev status`"
    )


def _shortened(event: ImageEvent) -> dict[str, object]:
    """The event as JSON, with the inline image cut to its first characters."""
    shown = event.model_dump(mode="json", exclude_none=True)
    image = event.image_b64 or ""
    raw = event.inline_bytes() or b""
    shown["image_b64"] = f"{image[:_SHOWN_B64_CHARS]}… ({len(image)} chars, {len(raw)} bytes PNG)"
    return shown

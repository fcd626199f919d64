"""``aigis worker``, ``aigis publish`` and ``aigis tail``.

Imports only light modules at load time: ``aigis worker`` never loads torch or transformers, and
``publish`` imports the data readers only when it reads a data set.
"""

from __future__ import annotations

import threading
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from aigis.cli.common import fail, settings
from schemas import AigisError, DeadLetter, PseudoLabel, ReviewItem, Verdict

_DECISION_STYLE = {"ai_generated": "red", "human": "green", "needs_review": "yellow"}


def register(app: typer.Typer) -> None:
    @app.command(help="Consume image events, score them and publish verdicts (Ctrl+C stops).")
    def worker(
        processes: int = typer.Option(
            1, "--processes", "-p", min=1, help="Worker processes in the consumer group."
        ),
    ) -> None:
        from aigis.run import run

        settings()
        try:
            code = run(processes)
        except AigisError as exc:
            fail(f"aigis worker: {exc}")
        raise typer.Exit(code)

    @app.command(
        help="Publish images (a file, a directory, a parquet data set or `smoke`) as events."
    )
    def publish(
        source: str = typer.Argument(
            ..., help="An image, a directory, a parquet data set, or smoke."
        ),
        count: int | None = typer.Option(
            None,
            "--count",
            "-n",
            min=1,
            help="Publish exactly N events, repeating images if needed.",
        ),
        topic: str | None = typer.Option(None, "--topic", help="Default: settings.topics.images."),
        by_uri: bool = typer.Option(
            False, "--by-uri", help="Send file:// URIs instead of the bytes (image files only)."
        ),
        caption: str | None = typer.Option(None, "--caption", help="Caption for every image."),
        split: str = typer.Option("test", "--split", help="Split of a data set to publish."),
        source_name: str | None = typer.Option(None, "--source", help="Producer/tenant name."),
    ) -> None:
        from tqdm import tqdm

        from worker.publish import make_events, publish, read_source

        loaded = settings()
        try:
            inputs = read_source(source, by_uri=by_uri, caption=caption, split=split)
            with tqdm(total=count, unit="event", desc="publish") as bar:
                sent = publish(
                    loaded,
                    make_events(inputs, count, source=source_name),
                    topic=topic,
                    on_sent=lambda _event: bar.update(),
                )
        except AigisError as exc:
            fail(f"aigis publish: {exc}")
        typer.echo(f"published {sent} events to {topic or loaded.topics.images}")

    @app.command(help="Print verdicts, review items, dead letters or pseudo-labels as they arrive.")
    def tail(
        kind: str = typer.Argument(..., help="verdicts, review, dlq or pseudo-labels."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON lines, one per message."),
        from_beginning: bool = typer.Option(
            False, "--from-beginning", help="Start at the oldest message, not at the end."
        ),
        count: int | None = typer.Option(None, "--count", "-n", min=1, help="Stop after N."),
        idle_exit: float | None = typer.Option(
            None, "--idle-exit", help="Stop after this many seconds without a message."
        ),
    ) -> None:
        from worker.runtime.signals import install_stop_handlers
        from worker.tail import KINDS, tail

        if kind not in KINDS:
            fail(f"aigis tail: unknown kind {kind!r}; use one of {', '.join(KINDS)}", code=2)
        loaded = settings()
        console = Console(highlight=False, soft_wrap=True)
        stopping = threading.Event()
        install_stop_handlers(stopping)
        try:
            for item in tail(
                loaded,
                kind,
                from_beginning=from_beginning,
                count=count,
                idle_exit_s=idle_exit,
                stop=stopping.is_set,
            ):
                if as_json:
                    typer.echo(item.raw.decode("utf-8", errors="replace"))
                else:
                    console.print(_pretty(item.message, item.partition, item.offset))
        except KeyboardInterrupt:
            pass
        except AigisError as exc:
            fail(f"aigis tail: {exc}")


def _pretty(message: Any, partition: int, offset: int) -> str:
    """One line per message, columns aligned; markup-escaped (ids are producer-controlled)."""
    where = f"[dim]{partition}:{offset:<6}[/dim]"
    if isinstance(message, Verdict):
        return f"{where} {_verdict(message)}"
    if isinstance(message, ReviewItem):
        image = "uri " + message.image_uri if message.image_uri else "inline image"
        return f"{where} {_verdict(message.verdict)}  {escape(image)}"
    if isinstance(message, DeadLetter):
        return (
            f"{where} [red]{message.reason:<22}[/red] {message.topic}:{message.partition}:"
            f"{message.offset}  {escape(message.event_id or '-')}  {escape(message.detail[:120])}"
        )
    if isinstance(message, PseudoLabel):
        generator = message.generators[message.label_b]
        return (
            f"{where} {message.image_sha256[:16]}  label_a={message.label_a} {generator:<12} "
            f"conf {message.confidence_a:.3f}/{message.confidence_b:.3f}  "
            f"{escape(message.event_id)}"
        )
    return f"{where} [red]undecodable message[/red]"


def _verdict(v: Verdict) -> str:
    style = _DECISION_STYLE.get(v.decision.value, "white")
    cached = "cached" if v.cached else "      "
    return (
        f"{escape(v.event_id):<34} [{style}]{v.decision.value:<12}[/{style}] p_ai={v.p_ai:.3f} "
        f"{escape(v.generator):<12} {cached} {escape(v.model_name)}:{escape(v.model_version)}"
    )

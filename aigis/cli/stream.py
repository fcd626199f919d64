"""``aigis worker``, ``aigis publish`` and ``aigis tail``.

Imports only light modules at load time: ``aigis worker`` never loads torch or transformers, and
``publish`` imports the data readers only when it reads a data set.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from aigis.cli.common import fail, settings
from schemas import AigisError, DeadLetter, PseudoLabel, ReviewItem, Verdict

if TYPE_CHECKING:
    from worker.publish import Skipped

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
        manifest: Path | None = typer.Option(
            None,
            "--manifest",
            help="Write one JSON line per event: file or URI, event_id, external_id, source.",
        ),
        external_id_from: str | None = typer.Option(
            None,
            "--external-id-from",
            help="Send each file's `name` (or `path` under the directory) as its external_id.",
        ),
    ) -> None:
        from tqdm import tqdm

        from worker.publish import (
            EXTERNAL_ID_FROM,
            plan_events,
            publish,
            read_source,
            with_manifest,
        )

        if external_id_from is not None and external_id_from not in EXTERNAL_ID_FROM:
            fail(
                f"aigis publish: --external-id-from {external_id_from!r} is not one of "
                f"{', '.join(EXTERNAL_ID_FROM)}",
                code=2,
            )
        loaded = settings()
        out = None
        try:
            inputs = read_source(
                source,
                by_uri=by_uri,
                caption=caption,
                split=split,
                external_id_from=external_id_from,
            )
            out = _open_manifest(manifest)
            planned = plan_events(inputs.images, count, source=source_name)
            events = with_manifest(planned, out) if out is not None else (e for _, e in planned)
            with tqdm(total=count, unit="event", desc="publish") as bar:
                sent = publish(loaded, events, topic=topic, on_sent=lambda _event: bar.update())
        except AigisError as exc:
            fail(f"aigis publish: {exc}")
        finally:
            if out is not None:
                out.close()
        typer.echo(f"published {sent} events to {topic or loaded.topics.images}")
        for line in _skip_report(inputs.skipped, inputs.files):
            typer.echo(line)
        if manifest is not None:
            typer.echo(f"manifest: {manifest} (one line per event)")

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
        from worker.tail import KINDS, describe, idle_note, tail

        if kind not in KINDS:
            fail(f"aigis tail: unknown kind {kind!r}; use one of {', '.join(KINDS)}", code=2)
        loaded = settings()
        console = Console(highlight=False, soft_wrap=True)
        # Notes go to stderr: with --json, stdout stays one message per line.
        notes = Console(stderr=True, highlight=False, soft_wrap=True, style="dim")
        notes.print(escape(describe(loaded, kind, from_beginning=from_beginning)))
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
                on_idle=lambda seen: notes.print(escape(idle_note(seen))),
            ):
                if as_json:
                    typer.echo(item.raw.decode("utf-8", errors="replace"))
                else:
                    console.print(_pretty(item.message, item.partition, item.offset))
        except KeyboardInterrupt:
            pass
        except AigisError as exc:
            fail(f"aigis tail: {exc}")


DETAIL_CHARS = 120


def _pretty(message: Any, partition: int, offset: int) -> str:
    """One line per message, columns aligned; markup-escaped (ids are producer-controlled).

    A dead letter's detail is shortened at a word boundary; ``--json`` prints all of it."""
    from worker.tail import shorten

    where = f"[dim]{partition}:{offset:<6}[/dim]"
    if isinstance(message, Verdict):
        return f"{where} {_verdict(message)}"
    if isinstance(message, ReviewItem):
        image = "uri " + message.image_uri if message.image_uri else "inline image"
        return f"{where} {_verdict(message.verdict)}  {escape(image)}"
    if isinstance(message, DeadLetter):
        return (
            f"{where} [red]{message.reason:<22}[/red] {message.topic}:{message.partition}:"
            f"{message.offset}  {escape(message.event_id or '-')}  "
            f"{escape(shorten(message.detail, DETAIL_CHARS))}"
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
    origin = "".join(
        f"  {name}={escape(value)}"
        for name, value in (("source", v.source), ("external_id", v.external_id))
        if value is not None
    )
    return (
        f"{escape(v.event_id):<34} [{style}]{v.decision.value:<12}[/{style}] p_ai={v.p_ai:.3f} "
        f"{escape(v.generator):<12} {cached} {escape(v.model_name)}:{escape(v.model_version)}"
        f"{origin}{_basis(v)}"
    )


def _basis(v: Verdict) -> str:
    """What besides the model's scores the verdict rests on; empty when nothing."""
    kinds = ",".join(dict.fromkeys(e.kind for e in v.evidence or []))
    if v.near_duplicate_of is not None:
        near = v.near_duplicate_of
        return f"  copy of {near.image_sha256[:12]} (distance {near.distance})"
    if v.decided_by in ("provenance", "evidence"):
        return f"  by {v.decided_by}: {kinds}"
    return f"  evidence: {kinds}" if kinds else ""


def _open_manifest(path: Path | None) -> IO[str] | None:
    if path is None:
        return None
    try:
        return path.open("w", encoding="utf-8")
    except OSError as exc:
        raise AigisError(
            f"cannot write the manifest {path}: {exc.strerror or type(exc).__name__}"
        ) from None


SKIPS_SHOWN = 5


def _skip_report(skipped: tuple[Skipped, ...], files: int | None) -> list[str]:
    """What a directory publish left out: how many, and the first few with why."""
    if not skipped:
        return []
    lines = [f"skipped {len(skipped)} of {files} files (not published):"]
    lines += [f"  {s.file}: {s.reason}" for s in skipped[:SKIPS_SHOWN]]
    if len(skipped) > SKIPS_SHOWN:
        lines.append(f"  and {len(skipped) - SKIPS_SHOWN} more")
    return lines

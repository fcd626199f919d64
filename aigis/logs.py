"""Logging set-up for the entry points: JSON lines in production, readable lines in a terminal.

Library code asks structlog for a logger and configures nothing; the entry points (the CLI and
``python -m aigis.run``) call :func:`configure_logging` once. structlog's events and the standard
library's records (kafka-python, httpx, anything else) go through one
``structlog.stdlib.ProcessorFormatter``, so a process writes one format. Log lines carry ids and
hashes, never pixels or captions.

How loud the libraries are depends on the process. A long-running worker keeps their warnings:
kafka-python's are the only word on heartbeats, rebalances and lost brokers. A command
(``aigis publish``, ``aigis tail``...) turns a library's failure into one message of its own, so
there kafka-python is silenced (it logs every refused connection as an ERROR, several a second
while it backs off) and the other libraries log errors only.
"""

from __future__ import annotations

import logging
import sys

import structlog

_CHATTY = ("kafka", "httpx", "httpcore", "urllib3", "fsspec", "s3fs", "botocore", "aiobotocore")
"""Libraries whose INFO lines are noise to an operator."""

SERVICE_LIBRARY_LEVELS = dict.fromkeys(_CHATTY, logging.WARNING)
"""Library log levels of a long-running process (the worker, the sink, the reviewer)."""

COMMAND_LIBRARY_LEVELS = {**dict.fromkeys(_CHATTY, logging.ERROR), "kafka": logging.CRITICAL}
"""Library log levels of a command, which reports their failures itself (see the module doc)."""


def configure_logging(level: str = "INFO", fmt: str = "auto", *, command: bool = False) -> None:
    """Configure structlog and the standard library behind it, once per process.

    ``command``: quiet the libraries as a short-lived command wants
    (:data:`COMMAND_LIBRARY_LEVELS`), else keep their warnings (:data:`SERVICE_LIBRARY_LEVELS`).
    """
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Not cached, so a test capturing logs (structlog.testing) sees every logger, even
        # after a command configured logging in the same process; the lookup costs little.
        cache_logger_on_first_use=False,
    )
    renderer: structlog.typing.Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer()
        final = [structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]
    else:
        renderer = structlog.processors.JSONRenderer()
        final = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ]
    handler = _CurrentStderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()], processors=final
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(numeric)
    libraries = COMMAND_LIBRARY_LEVELS if command else SERVICE_LIBRARY_LEVELS
    for name, floor in libraries.items():
        logging.getLogger(name).setLevel(max(numeric, floor))


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each line to whatever ``sys.stderr`` is at that moment.

    A handler that kept the stream it was created with would fail on every later line once that
    stream is replaced and closed (a test runner capturing output, a daemon redirecting its
    streams). Looking the stream up per line costs nothing measurable.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass

"""The fetch policy installed for the label store: the one place a process that reads stored
images back (training, retraining) gets its URI reader, bound by the worker's policy."""

from __future__ import annotations

import threading

from schemas.settings_fetch import FetchSettings
from training.labelstore.fetch import install_uri_reader
from worker.fetch import UriReader


def install_fetch_policy(settings: FetchSettings) -> None:
    """Let the label store read image URIs, through ``settings``' policy only. The reader is
    made on first use, so commands that read no image pay nothing."""
    lock = threading.Lock()
    reader: UriReader | None = None

    def read(uri: str, max_bytes: int) -> bytes:
        nonlocal reader
        with lock:
            if reader is None:
                reader = UriReader(settings)
        return reader.read(uri, max_bytes)

    install_uri_reader(read)

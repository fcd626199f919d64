"""Fixtures of the fetch tests: loopback origins and readers admitted to reach them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.worker.fetch.origin import MakeReader, Origin, loopback, serve
from worker.fetch import UriReader


@pytest.fixture
def origin() -> Iterator[Origin]:
    yield from serve()


@pytest.fixture
def other_origin() -> Iterator[Origin]:
    """A second loopback origin, on another port."""
    yield from serve()


@pytest.fixture
def make_reader(origin: Origin) -> Iterator[MakeReader]:
    """``make_reader(**fetch_settings) -> UriReader`` with :func:`loopback`'s policy."""
    readers: list[UriReader] = []

    def make(**overrides: Any) -> UriReader:
        readers.append(UriReader(loopback(origin, **overrides)))
        return readers[-1]

    yield make
    for reader in readers:
        reader.close()

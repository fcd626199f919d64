"""Local files under the file roots: regular files inside a root load; everything else is
refused without being opened, and nothing can make the reader wait."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.settings_fetch import FetchSettings
from worker.fetch import FetchError, UriReader
from worker.fetch.storage import read_file

pytestmark = pytest.mark.unit

IMAGE = b"\x89PNG" + b"x" * 100


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    (root / "a.png").write_bytes(IMAGE)
    (tmp_path / "secret.txt").write_bytes(b"outside the root")
    return root


@pytest.fixture
def reader(root: Path) -> Iterator[UriReader]:
    reader = UriReader(FetchSettings(file_roots=[root], timeout_s=1.0))
    yield reader
    reader.close()


def refused(reader: UriReader, uri: str, max_bytes: int = 1_000_000) -> FetchError:
    with pytest.raises(FetchError) as caught:
        reader.read(uri, max_bytes)
    return caught.value


def test_a_regular_file_under_a_root_loads(reader: UriReader, root: Path) -> None:
    assert reader.read((root / "a.png").as_uri(), 1_000_000) == IMAGE
    assert reader.read(f"file://localhost{root}/a.png", 1_000_000) == IMAGE
    assert reader.read(f"file://{root}/sub/../a.png", 1_000_000) == IMAGE


def test_no_file_is_read_without_a_root(root: Path) -> None:
    reader = UriReader(FetchSettings())
    try:
        assert refused(reader, (root / "a.png").as_uri()).reason == "uri_not_allowed"
    finally:
        reader.close()


@pytest.mark.parametrize(
    "uri",
    [
        "file:///etc/shadow",
        "file:///etc/hostname",
        "file://any-host/etc/hostname",
        "file:///proc/self/environ",
        "file:///proc/self/fd/0",
        "file:///dev/zero",
        "file://{root}/../secret.txt",
        "file://{root}/%2e%2e/secret.txt",
        "file://{root}/a.png%00.txt",
        "file://other-host{root}/a.png",
        "file://localhost:80{root}/a.png",
        "file:relative/a.png",
    ],
)
def test_what_lies_outside_a_root_is_refused(reader: UriReader, root: Path, uri: str) -> None:
    assert refused(reader, uri.format(root=root)).reason == "uri_not_allowed"


def test_symlinks_out_of_a_root_are_refused_and_inside_it_followed(
    reader: UriReader, root: Path
) -> None:
    (root / "out.png").symlink_to(root.parent / "secret.txt")
    (root / "etc").symlink_to("/etc")
    (root / "in.png").symlink_to(root / "a.png")
    assert refused(reader, (root / "out.png").as_uri()).reason == "uri_not_allowed"
    assert refused(reader, f"file://{root}/etc/hostname").reason == "uri_not_allowed"
    assert reader.read((root / "in.png").as_uri(), 1_000_000) == IMAGE


@pytest.mark.timeout(10)
def test_a_fifo_is_refused_without_waiting_for_a_writer(reader: UriReader, root: Path) -> None:
    fifo = root / "pipe.png"
    os.mkfifo(fifo)
    started = time.monotonic()
    assert refused(reader, fifo.as_uri()).reason == "uri_not_allowed"
    with pytest.raises(FetchError):
        read_file(fifo, 100, time.monotonic() + 1.0)
    assert time.monotonic() - started < 0.5


def test_directories_and_devices_are_refused(root: Path) -> None:
    (root / "dir.png").mkdir()
    reader = UriReader(FetchSettings(file_roots=[root, Path("/dev")]))
    try:
        for uri in [(root / "dir.png").as_uri(), root.as_uri(), "file:///dev/zero"]:
            assert refused(reader, uri).reason == "uri_not_allowed"
    finally:
        reader.close()


def test_missing_empty_and_oversized_files(reader: UriReader, root: Path) -> None:
    (root / "empty.png").write_bytes(b"")
    missing = refused(reader, (root / "missing.png").as_uri())
    assert missing.reason == "unreachable_uri"
    assert "ENOENT" in missing.cause
    for leak in ("ENOENT", "No such file", "missing.png", str(root)):
        assert leak not in missing.detail
    assert refused(reader, (root / "empty.png").as_uri()).reason == "empty_image"
    assert refused(reader, (root / "a.png").as_uri(), max_bytes=10).reason == "image_too_large"


def test_a_read_past_the_deadline_stops(root: Path) -> None:
    with pytest.raises(FetchError) as caught:
        read_file(root / "a.png", 1_000, time.monotonic() - 1)
    assert caught.value.reason == "fetch_timeout"


@given(path=st.lists(st.sampled_from(["a.png", "..", ".", "sub", "%2e%2e", "", "%00"]), max_size=6))
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_path_under_a_root_loads_a_file_of_the_root_or_is_refused(
    reader: UriReader, root: Path, path: list[str]
) -> None:
    if not (root / "out.png").is_symlink():
        (root / "out.png").symlink_to(root.parent / "secret.txt")
        (root / "in.png").symlink_to(root / "a.png")
    uri = f"file://{root}/{'/'.join(path)}"
    try:
        data = reader.read(uri, 1_000_000)
    except FetchError as err:
        data = err.reason.encode()
    assert data in {IMAGE, b"uri_not_allowed", b"unreachable_uri"}

"""The hostile corpus through real Kafka, Redis and TorchServe in one run: every record ends as
exactly one verdict or one dead letter with the expected reason, and normal traffic published
after it is all scored."""

from __future__ import annotations

import base64
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from aigis import samples as art
from schemas import ImageEvent, encode
from schemas.settings import Settings
from schemas.settings_fetch import FetchSettings
from tests.streams import drain, events_for, publish_events, publish_raw, run_worker
from tests.worker.fetch.origin import Origin, ok, redirect, trickle
from tests.worker.hostile import VERDICT, Case, evidence_cases, image_cases, message_cases

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Images = list[tuple[bytes, str | None]]


def _png() -> bytes:
    good = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 30)).save(good, "PNG")
    return good.getvalue()


@pytest.fixture
def origin() -> Iterator[Origin]:
    """An image server on 127.0.0.2 (loopback, admitted by the test's private-network opt-in)
    that also redirects to the metadata address and trickles bytes."""
    server = Origin(host="127.0.0.2")
    server.routes["/good.png"] = lambda h: ok(h, _png())
    server.routes["/to-metadata"] = redirect("http://169.254.169.254/latest/meta-data/")
    server.routes["/to-other-loopback"] = redirect("http://127.0.0.1:9/x.png")
    server.routes["/to-file"] = redirect("file:///etc/passwd")
    server.routes["/slow.png"] = trickle
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def uri_cases(origin: Origin, root: Path) -> list[Case]:
    """Image URIs a hostile producer sends: internal addresses, files outside the roots, a FIFO,
    redirects into the network, a slow sender."""
    fifo = root / "fifo.png"
    os.mkfifo(fifo)
    (root / "ok.png").write_bytes(_png())
    (root / "link.png").symlink_to("/etc/passwd")

    def uri(name: str, value: str, outcome: str) -> Case:
        return Case(name, encode(ImageEvent(event_id=f"u-{name}", image_uri=value)), outcome)

    return [
        uri("loopback", "http://127.0.0.1/a.png", "uri_not_allowed"),
        uri("localhost", f"http://localhost:{origin.port}/good.png", "uri_not_allowed"),
        uri("ipv6_loopback", "http://[::1]/a.png", "uri_not_allowed"),
        uri("metadata", "http://169.254.169.254/latest/meta-data/", "uri_not_allowed"),
        uri("link_local_v6", "http://[fe80::1]/a.png", "uri_not_allowed"),
        uri("private_10", "http://10.1.2.3/a.png", "uri_not_allowed"),
        uri("private_192", "https://192.168.0.1/a.png", "uri_not_allowed"),
        uri("unspecified", "http://0.0.0.0/a.png", "uri_not_allowed"),
        uri("mapped_v6", "http://[::ffff:127.0.0.1]/a.png", "uri_not_allowed"),
        uri("redirect_to_metadata", origin.url("/to-metadata"), "uri_not_allowed"),
        uri("redirect_to_loopback", origin.url("/to-other-loopback"), "uri_not_allowed"),
        uri("redirect_to_file", origin.url("/to-file"), "uri_not_allowed"),
        uri("slow_sender", origin.url("/slow.png"), "fetch_timeout"),
        uri("missing_on_server", origin.url("/missing.png"), "unreachable_uri"),
        uri("good_by_http", origin.url("/good.png"), VERDICT),
        uri("file_outside_roots", "file:///etc/passwd", "uri_not_allowed"),
        uri("file_other_host", "file://otherhost/etc/hostname", "uri_not_allowed"),
        uri("file_traversal", (root / ".." / ".." / "etc" / "passwd").as_uri(), "uri_not_allowed"),
        uri("file_symlink_out", (root / "link.png").as_uri(), "uri_not_allowed"),
        uri("file_fifo", fifo.as_uri(), "uri_not_allowed"),
        uri("file_directory", root.as_uri(), "uri_not_allowed"),
        uri("file_good", (root / "ok.png").as_uri(), VERDICT),
        uri("s3_unlisted_bucket", "s3://someone-elses-bucket/a.png", "uri_not_allowed"),
    ]


def corpus(origin: Origin, root: Path) -> list[Case]:
    signed = art.signed_jpeg(art.credential(), art.photo(7))
    return [
        *message_cases(_png()),
        *image_cases(),
        *evidence_cases(signed, art.corrupt_manifest(signed)),
        *uri_cases(origin, root),
    ]


def test_the_hostile_corpus_ends_in_one_outcome_each_and_stops_nothing(
    worker_settings: Settings, smoke_images: Images, origin: Origin, tmp_path: Path
) -> None:
    root = tmp_path / "images"
    root.mkdir()
    fetch = FetchSettings.model_validate(
        {
            **worker_settings.fetch.model_dump(),
            "schemes": {"http", "https"},
            "ports": {80, 443, origin.port},
            "private_networks": ["127.0.0.2/32"],
            "file_roots": [root],
            "timeout_s": 1.5,
            "retries": 0,
        }
    )
    settings = worker_settings.model_copy(update={"fetch": fetch})
    cases = corpus(origin, root)
    assert len(cases) >= 40
    publish_raw(settings, [case.value for case in cases])
    normal = publish_events(settings, events_for(smoke_images[:20] * 5, "normal"))
    assert len(normal) == 100
    run_worker(settings, idle_exit_s=5.0)

    letters = drain(settings, "dlq", expect=sum(c.outcome != VERDICT for c in cases), finished=True)
    verdicts = drain(settings, "verdicts", expect=len(normal), finished=True)
    # publish_raw keys record i "raw-i": that is how each outcome finds its case.
    outcome: dict[str, list[str]] = {}
    for letter in letters:
        key = base64.b64decode(letter.original_key_b64 or "").decode()
        outcome.setdefault(key, []).append(letter.reason)
    wrong = {
        case.name: outcome.get(f"raw-{i}")
        for i, case in enumerate(cases)
        if outcome.get(f"raw-{i}") != (None if case.outcome == VERDICT else [case.outcome])
    }
    assert not wrong, wrong
    legal = [c for c in cases if c.outcome == VERDICT]
    assert len(verdicts) == len(normal) + len(legal)
    assert set(normal) <= {v.event_id for v in verdicts}
    # Nothing refused reached the origin: only the two admitted paths and the ones refused late.
    reached = {path for path, _ in origin.requests}
    assert reached <= {
        "/good.png",
        "/slow.png",
        "/missing.png",
        "/to-metadata",
        "/to-other-loopback",
        "/to-file",
    }
    # No dead letter tells the producer what the worker saw (paths, OS errors, statuses).
    for letter in letters:
        assert "/etc/passwd" not in letter.detail
        assert "Errno" not in letter.detail

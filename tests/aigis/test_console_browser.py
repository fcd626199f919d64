"""The review console in a real headless Chromium (Debian's ``chromium`` and ``chromedriver``),
against real Kafka and Redis: log in, label by keyboard, skip, undo, two reviewers, a restart,
hostile requests and an inert hostile caption. Screenshots go to
``$AIGIS_STATE_DIR/artefacts/console/``."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from aigis.console import auth
from aigis.console.db import open_database
from aigis.console.outbox import DECISION_HEADER
from schemas.codec import decode, encode
from schemas.messages import ReviewDecision
from schemas.overrides import HumanLabel, override_key
from schemas.settings import Settings
from tests.aigis.console_support import (
    Console,
    event_id_on,
    free_port,
    item_id_on,
    logged_in,
    review_item,
)
from worker import kafka

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
HOSTILE_CAPTION = "<script>alert(1)</script><img src=x onerror=alert(2)> \x1b[31mred\x1b[0m"


@pytest.fixture
def console(
    kafka_ready: Settings,
    make_topic: Callable[..., str],
    make_group_id: Callable[[], str],
    redis_prefix: str,
    tmp_path: Path,
) -> Iterator[tuple[Console, Settings]]:
    review, decisions = make_topic(partitions=1), make_topic(partitions=1)
    env = {
        **os.environ,
        "AIGIS_STATE_DIR": str(tmp_path / "state"),
        "AIGIS_TOPICS__REVIEW": review,
        "AIGIS_TOPICS__REVIEW_DECISIONS": decisions,
        "AIGIS_REVIEW__GROUP_ID": make_group_id(),
        "AIGIS_REVIEW__PUBLISH_DELAY_S": "1",
        "AIGIS_REDIS__OVERRIDE_PREFIX": f"{redis_prefix}:override",
        "AIGIS_LOG_FORMAT": "json",
    }
    topics = kafka_ready.topics.model_copy(update={"review": review, "review_decisions": decisions})
    settings = kafka_ready.model_copy(update={"topics": topics})
    app = Console(env, free_port(), tmp_path / "console.log")
    app.run_cli("review", "user", "add", "ann", "--password-stdin", stdin=PASSWORD + "\n")
    engine = open_database(f"sqlite:///{tmp_path / 'state' / 'review' / 'console.db'}")
    auth.set_reviewer(engine, "bob", PASSWORD, "reviewer")  # the same as the command, faster
    auth.set_reviewer(engine, "aud", PASSWORD, "auditor")
    engine.dispose()
    app.start()
    try:
        yield app, settings
    finally:
        app.close()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail("chromium or chromedriver is missing: run deploy/console/install.sh")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,960")
    client = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        yield client
    finally:
        client.quit()


@pytest.fixture
def artefacts(settings: Settings) -> Path:
    folder = settings.state_dir / "artefacts" / "console"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def publish_items(settings: Settings, first: int, count: int) -> None:
    producer = kafka.producer(settings)
    try:
        for i in range(first, first + count):
            item = review_item(i, f"e-{i}", caption=HOSTILE_CAPTION if i == 0 else "a photo")
            producer.send(settings.topics.review, key=f"e-{i}".encode(), value=encode(item))
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)


def shown(browser: WebDriver) -> str:
    return browser.find_element(By.ID, "item").get_attribute("data-event-id") or ""


_STALE = (StaleElementReferenceException,)


def press(browser: WebDriver, key: str, then: str | None) -> None:
    """Press ``key`` on the item page and wait for the page it leads to (item ``then``, or the
    empty queue when None)."""
    browser.find_element(By.TAG_NAME, "body").send_keys(key)

    def arrived(b: WebDriver) -> bool:
        if then is None:
            return bool(b.find_elements(By.ID, "empty"))
        items = b.find_elements(By.ID, "item")
        return bool(items) and items[0].get_attribute("data-event-id") == then

    # The page may be replaced between finding an element and reading it: look again.
    WebDriverWait(browser, 20, poll_frequency=0.1, ignored_exceptions=_STALE).until(arrived)


def wait_for_items(browser: WebDriver, url: str, first: str) -> None:
    def ready(b: WebDriver) -> bool:
        b.get(url)
        return bool(b.find_elements(By.ID, "item")) and shown(b) == first

    WebDriverWait(browser, 60, poll_frequency=0.5, ignored_exceptions=_STALE).until(ready)


def test_review_in_the_browser(
    console: tuple[Console, Settings],
    browser: WebDriver,
    artefacts: Path,
    read_topic: Callable[..., list[Any]],
    redis_client: redis.Redis,
) -> None:
    app, settings = console
    publish_items(settings, 0, 6)

    browser.get(app.url + "/")
    assert browser.current_url.endswith("/login")  # nothing without a login
    browser.find_element(By.ID, "name").send_keys("ann")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.save_screenshot(str(artefacts / "login.png"))
    browser.find_element(By.ID, "login-button").click()
    # The form's POST leaves after the click returns: a navigation before it lands cancels it.
    WebDriverWait(browser, 30).until(lambda b: not b.current_url.endswith("/login"))
    wait_for_items(browser, app.url + "/", "e-0")

    # The hostile caption is shown as text; the image loaded; only our own script is on the page.
    caption = browser.find_element(By.ID, "caption").text
    assert "<script>alert(1)</script>" in caption
    assert "\\x1b[31mred" in caption
    assert "\x1b" not in caption
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 1
    assert browser.execute_script("return document.getElementById('image').naturalWidth") == 48
    browser.save_screenshot(str(artefacts / "item.png"))

    # Bob holds another item meanwhile: never the one Ann holds.
    bob, bob_csrf = logged_in(app.url, "bob", PASSWORD)
    bob_page = bob.get("/").text
    assert event_id_on(bob_page) == "e-1"

    press(browser, "h", "e-2")  # human
    press(browser, "1", "e-3")  # SD 2.1
    press(browser, "s", "e-4")  # skip e-3: it comes back at the end
    press(browser, "3", "e-5")  # SD 3
    press(browser, "z", "e-4")  # undo: e-4 is back
    press(browser, "4", "e-5")  # DALL-E 3 instead
    press(browser, "h", "e-3")  # human; then the skipped one
    press(browser, "2", None)  # SDXL; nothing left for Ann
    done = bob.post(f"/items/{item_id_on(bob_page)}/answer", data={"csrf": bob_csrf, "label": "h"})
    assert done.status_code == 400  # "h" is a key, not a label
    done = bob.post(
        f"/items/{item_id_on(bob_page)}/answer", data={"csrf": bob_csrf, "label": "human"}
    )
    assert done.status_code == 303

    records = read_topic(settings.topics.review_decisions, 6, timeout_s=30)
    decisions = [decode(ReviewDecision, r.value) for r in records]
    got = {d.event_id: (d.reviewer, d.generators[d.label_b]) for d in decisions}
    assert got == {
        "e-0": ("ann", "real"),
        "e-1": ("bob", "real"),
        "e-2": ("ann", "sd21"),
        "e-3": ("ann", "sdxl"),
        "e-4": ("ann", "dalle3"),
        "e-5": ("ann", "real"),
    }
    assert len(records) == 6  # once each: the undone decision was never published
    ids = [dict(r.headers)[DECISION_HEADER] for r in records]
    assert len(set(ids)) == 6
    assert all(r.key.decode() == d.image_sha256 for r, d in zip(records, decisions, strict=True))

    # The human labels are overrides in Redis, which the worker reads before its cache.
    key = override_key(f"{settings_prefix(app)}", decisions[0].image_sha256)
    stored = HumanLabel.from_json(redis_client.get(key) or b"")
    assert stored is not None
    assert stored.reviewer == decisions[0].reviewer

    check_hostile_requests(app, bob, bob_csrf, item_id_on(bob_page))

    # A restart loses nothing: Ann's held item and the queue survive.
    publish_items(settings, 6, 2)
    wait_for_items(browser, app.url + "/", "e-6")
    assert app.stop() == 0
    app.start()
    browser.get(app.url + "/")
    assert shown(browser) == "e-6"
    browser.get(app.url + "/queue")
    assert "2 uncertain" in browser.find_element(By.ID, "counts").text
    browser.save_screenshot(str(artefacts / "queue.png"))
    deadline = time.monotonic() + 20
    while "aigis_review_backlog 2.0" not in (metrics := httpx.get(app.url + "/metrics").text):
        assert time.monotonic() < deadline, metrics
        time.sleep(0.3)
    assert 'aigis_review_queue_depth{band="needs_review"} 2.0' in metrics


def settings_prefix(app: Console) -> str:
    return app.env["AIGIS_REDIS__OVERRIDE_PREFIX"]


def check_hostile_requests(app: Console, bob: httpx.Client, csrf: str, item_id: int) -> None:
    anonymous = httpx.Client(base_url=app.url, timeout=10)
    assert anonymous.get("/").headers["location"] == "/login"
    answer = f"/items/{item_id}/answer"
    assert anonymous.post(answer, data={"csrf": csrf, "label": "human"}).status_code == 401
    assert anonymous.get(f"/items/{item_id}/image").status_code == 401
    forged = {"csrf": csrf, "label": "human", "reviewer": "ann"}
    assert bob.post(answer, data=forged).status_code == 400  # a request cannot name its reviewer
    assert bob.post(answer, data={"csrf": "forged", "label": "human"}).status_code == 403
    cross = bob.post(
        answer, data={"csrf": csrf, "label": "human"}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    big = bob.post(answer, data={"csrf": csrf, "label": "x" * 20_000})
    assert big.status_code == 413
    assert bob.get("/static/..%2f..%2fpyproject.toml").status_code == 404
    assert bob.get("/items/..%2f..%2fetc%2fpasswd/image").status_code in {404, 422}
    assert bob.get("/queue?source=%3Cscript%3E").status_code == 400
    auditor, auditor_csrf = logged_in(app.url, "aud", PASSWORD)
    assert auditor.get("/").headers["location"] == "/queue"
    refused = auditor.post(answer, data={"csrf": auditor_csrf, "label": "human"})
    assert refused.status_code == 403
    page = bob.get("/queue")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "No quality sample" in bob.get("/quality").text

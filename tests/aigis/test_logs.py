"""Library log levels: a command quiets them, a long-running process keeps their warnings."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from aigis.logs import configure_logging

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    names = ("kafka", "httpx", "httpcore")
    before = {name: logging.getLogger(name).level for name in names}
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for name, old in before.items():
        logging.getLogger(name).setLevel(old)
    root.handlers, root.level = handlers, level


def test_a_command_silences_kafka_python_and_keeps_errors_of_httpx() -> None:
    configure_logging("INFO", "json", command=True)
    assert not logging.getLogger("kafka.net.manager").isEnabledFor(logging.ERROR)
    assert logging.getLogger("kafka").isEnabledFor(logging.CRITICAL)
    assert not logging.getLogger("httpx").isEnabledFor(logging.WARNING)
    assert logging.getLogger("httpx").isEnabledFor(logging.ERROR)
    assert logging.getLogger("httpcore").getEffectiveLevel() == logging.ERROR


def test_a_service_keeps_library_warnings() -> None:
    configure_logging("INFO", "json")
    assert logging.getLogger("kafka.coordinator").isEnabledFor(logging.WARNING)
    assert not logging.getLogger("kafka").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING


def test_debug_does_not_lower_a_library_below_its_floor() -> None:
    configure_logging("DEBUG", "json")
    assert not logging.getLogger("kafka").isEnabledFor(logging.INFO)
    assert logging.getLogger("aigis").isEnabledFor(logging.DEBUG)


def test_a_quiet_root_level_quiets_libraries_too() -> None:
    configure_logging("CRITICAL", "json")
    assert not logging.getLogger("kafka").isEnabledFor(logging.ERROR)

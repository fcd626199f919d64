"""The environment the demo gives the commands it runs (no services)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aigis.demo import Demo
from schemas.settings import Settings

pytestmark = pytest.mark.unit


def test_the_demo_opts_its_own_store_in_to_keeping_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIGIS_STORE__KEEP_IMAGE_BYTES", raising=False)
    demo = Demo(Settings(state_dir=tmp_path), keep=False, events=1, reuse_model=False)
    env = demo._env()
    assert env["AIGIS_STORE__URL"] == str(tmp_path / "demo" / "labels")
    for name, value in env.items():
        if name.startswith("AIGIS_STORE__"):
            monkeypatch.setenv(name, value)
    child = Settings()
    assert child.store.keep_image_bytes is True
    assert child.store_url == str(tmp_path / "demo" / "labels")
    monkeypatch.delenv("AIGIS_STORE__KEEP_IMAGE_BYTES")
    assert Settings().store.keep_image_bytes is False  # the demo's choice, not the default

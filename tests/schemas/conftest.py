"""Valid examples of every message, for the schema tests to vary one field at a time."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from PIL import Image

SHA = "ab" * 32
"""A well-formed image hash for the examples."""


@pytest.fixture(scope="session")
def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def png_b64(png_bytes: bytes) -> str:
    return base64.b64encode(png_bytes).decode("ascii")


@pytest.fixture
def verdict_fields() -> dict[str, Any]:
    return {
        "event_id": "evt-1",
        "image_sha256": SHA,
        "p_ai": 0.93,
        "decision": "ai_generated",
        "generator": "sdxl",
        "generator_probs": {"real": 0.01, "sdxl": 0.9, "sd3": 0.09},
        "model_name": "detector",
        "model_version": "3",
    }

"""The TorchServe handler in process: a TorchServe Context for a batch of requests."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from ts.context import Context, RequestProcessor

from serving.client import wire


def handler_context(
    model_dir: Path, rows: int = 1, headers: dict[str, str] | None = None
) -> Context:
    """The Context TorchServe gives the handler of the extracted archive ``model_dir`` for a
    batch of ``rows`` requests, each with ``headers``."""
    manifest = json.loads((model_dir / "MAR-INF" / "MANIFEST.json").read_text())
    model_yaml = yaml.safe_load((model_dir / manifest["model"]["configFile"]).read_text())
    context = Context(
        "detector", str(model_dir), manifest, 8, None, "0.12.0", model_yaml_config=model_yaml
    )
    context.request_processor = [RequestProcessor(dict(headers or {})) for _ in range(rows)]
    return context


def body_item(image: bytes, caption: str | None = None) -> dict[str, str]:
    """One item of a JSON request body."""
    return wire.item_json(image, caption)

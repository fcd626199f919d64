"""Generator names in free text (a checkpoint file, a tool name), mapped onto the label set.

A name in the label set (:data:`schemas.labels.GENERATORS`) is given as the label; a known tool
outside it is given by its own name; text that names no generator gives None. Patterns are
plain alternations on text already cut to a bounded length, so matching costs linear time.
"""

from __future__ import annotations

import re
from typing import Final

_MAX_TEXT: Final[int] = 4_096
"""Characters of a text searched for a name: names sit at the start of a tool string and in
the settings line of generation parameters, never deep in a prompt."""

_LABELS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"sd[ _-]?xl|stable[ _-]?diffusion[ _-]?xl", re.IGNORECASE), "sdxl"),
    (re.compile(r"\bsd[ _-]?3|stable[ _-]?diffusion[ _-]?3", re.IGNORECASE), "sd3"),
    (re.compile(r"v2-1|\bsd[ _-]?2\.?1|stable[ _-]?diffusion[ _-]?2", re.IGNORECASE), "sd21"),
    (re.compile(r"dall[ ·_-]?e[ _-]?3", re.IGNORECASE), "dalle3"),
    (re.compile(r"midjourney.{0,16}\b(?:v|version)[ _-]?6", re.IGNORECASE), "midjourney6"),
)

_TOOLS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"midjourney", re.IGNORECASE), "midjourney"),
    (re.compile(r"dall[ ·_-]?e", re.IGNORECASE), "dalle"),
    (re.compile(r"novel ?ai", re.IGNORECASE), "novelai"),
    (re.compile(r"firefly", re.IGNORECASE), "adobe-firefly"),
    (re.compile(r"imagen\b|gemini", re.IGNORECASE), "google-imagen"),
    (re.compile(r"\bflux", re.IGNORECASE), "flux"),
    (re.compile(r"ideogram", re.IGNORECASE), "ideogram"),
    (re.compile(r"leonardo\.?ai", re.IGNORECASE), "leonardo-ai"),
    (re.compile(r"chatgpt|gpt-4o|gpt-image|openai", re.IGNORECASE), "openai"),
    (re.compile(r"comfy ?ui", re.IGNORECASE), "comfyui"),
    (re.compile(r"invokeai", re.IGNORECASE), "invokeai"),
    (re.compile(r"automatic1111|stable diffusion web ?ui|sd-webui", re.IGNORECASE), "a1111"),
    (re.compile(r"stable[ _-]?diffusion|\bsd[ _-]?1\.?5", re.IGNORECASE), "stable-diffusion"),
)


KNOWN_NAMES: Final[frozenset[str]] = frozenset(name for _, name in (*_LABELS, *_TOOLS))
"""Every name this module can give."""


def label_for(text: str) -> str | None:
    """The label-set generator ``text`` names (a model or checkpoint), or None."""
    head = text[:_MAX_TEXT]
    return next((label for pattern, label in _LABELS if pattern.search(head)), None)


def generator_in(text: str) -> str | None:
    """The generator ``text`` names: a label when it names a model of the label set, else a known
    tool's name, else None (text such as ``Adobe Photoshop`` names no generator)."""
    head = text[:_MAX_TEXT]
    return label_for(head) or next((name for pattern, name in _TOOLS if pattern.search(head)), None)

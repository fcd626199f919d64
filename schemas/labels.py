"""Label taxonomy.

Task A: 0 human, 1 AI-generated. Task B uses the CT2 / Defactify encoding: 0 real (COCO),
1 SD 2.1, 2 SDXL, 3 SD 3, 4 DALL-E 3, 5 Midjourney 6. A model may be trained on another generator
list; that list travels with its checkpoint, so code that reads a model's output uses the model's
list, and these constants are the default.

A label set is data: entry 0 is ``real``, then generator names, each optionally with a family
(``flux/1-dev``, ``openai/gpt-image-1``). ``other`` is an ordinary class a set may have (AI images
of a generator the set does not name); ``unknown`` is never a class, it is what a verdict says when
the generator head abstains. A reviewer who names a generator outside the set gives ``other`` with
the name kept beside it (:func:`reviewer_label`), so the label can later train a class of its own.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Final

TASK_A: Final[tuple[str, str]] = ("human", "ai_generated")
"""Task A class names, indexed by Label_A."""

GENERATORS: Final[tuple[str, ...]] = ("real", "sd21", "sdxl", "sd3", "dalle3", "midjourney6")
"""Task B class names in the CT2 encoding, indexed by Label_B."""

GENERATOR_DISPLAY: Final[dict[str, str]] = {
    "real": "Real (COCO)",
    "sd21": "Stable Diffusion 2.1",
    "sdxl": "Stable Diffusion XL",
    "sd3": "Stable Diffusion 3",
    "dalle3": "DALL-E 3",
    "midjourney6": "Midjourney 6",
}

UNKNOWN_GENERATOR: Final[str] = "unknown"
"""What a Verdict names when the generator head abstains."""

REAL: Final[str] = "real"
"""Class 0 of every label set: the human / real images."""

OTHER_GENERATOR: Final[str] = "other"
"""The class of AI images from a generator the label set does not name."""

MAX_GENERATOR_CHARS: Final[int] = 64
MAX_LABEL_SET: Final[int] = 256
"""Most classes a label set may have (a verdict carries one probability per class)."""

RESERVED_WORDS: Final[frozenset[str]] = frozenset(
    {"real", "unknown", "human", "ai", "ai-generated", "ai_generated", "needs-review"}
    | {"needs_review", "skip", "unsure"}
)
"""Words that mean a decision or an answer, never a generator: not a name, nor a part of one.
``other`` is a class, so also not the family or model part of a name."""

_NAME = re.compile(r"^[a-z0-9][a-z0-9._+-]*(/[a-z0-9][a-z0-9._+-]*)?$")


class Decision(StrEnum):
    """What the pipeline decided about one image."""

    AI_GENERATED = "ai_generated"
    HUMAN = "human"
    NEEDS_REVIEW = "needs_review"


def generator_name(label_b: int, generators: tuple[str, ...] = GENERATORS) -> str:
    """Name of Task B class ``label_b``; raises ValueError for an index outside the list."""
    if not 0 <= label_b < len(generators):
        raise ValueError(f"Label_B {label_b} is outside 0..{len(generators) - 1}")
    return generators[label_b]


def generator_problem(name: str) -> str | None:
    """Why ``name`` cannot be a generator class name, or None when it can."""
    # One character is a console or terminal key (h, a, s, q), never a generator's name.
    if not 2 <= len(name) <= MAX_GENERATOR_CHARS:
        return f"a generator name has 2 to {MAX_GENERATOR_CHARS} characters"
    if not _NAME.fullmatch(name):
        return (
            "a generator name is lower-case letters, digits and . _ + -, with at most one / "
            "between a family and a model (flux/1-dev, openai/gpt-image-1)"
        )
    if name in (UNKNOWN_GENERATOR, REAL):
        return f"{name!r} is reserved: {REAL!r} is class 0, {UNKNOWN_GENERATOR!r} the abstention"
    parts = name.split("/")
    if name in RESERVED_WORDS or (len(parts) == 2 and set(parts) & (RESERVED_WORDS | {"other"})):
        return f"{name!r} is reserved: it reads as a decision or an answer, not a generator"
    return None


def generator_family(name: str) -> str | None:
    """The family part of ``family/model``, or None for a name without one."""
    family, slash, _ = name.partition("/")
    return family if slash else None


def normalise_generator(text: str) -> str:
    """A typed generator name as a class name (trimmed, lower case, spaces as ``-``); raises
    ValueError saying what is wrong when it cannot be one."""
    name = re.sub(r"\s+", "-", text.strip().lower())
    problem = generator_problem(name)
    if problem is not None:
        raise ValueError(f"{text[:80]!r} is not a usable generator name: {problem}")
    return name


def check_label_set(generators: Sequence[str]) -> None:
    """Raise ValueError unless ``generators`` is a label set: ``real`` first, then 1 to
    MAX_LABEL_SET - 1 distinct generator names."""
    if len(generators) < 2 or len(generators) > MAX_LABEL_SET:
        raise ValueError(f"a label set has real and 1 to {MAX_LABEL_SET - 1} generators")
    if generators[0] != REAL:
        raise ValueError(f"class 0 of a label set is {REAL!r}, not {generators[0]!r}")
    if len(set(generators)) != len(generators):
        raise ValueError("the names of a label set must be distinct")
    for name in generators[1:]:
        problem = generator_problem(name)
        if problem is not None:
            raise ValueError(f"{name[:80]!r}: {problem}")


def label_set_id(generators: Sequence[str]) -> str:
    """A short digest of the label set (names and order): what cache namespaces carry, so a
    changed label set never reads scores of another."""
    return hashlib.sha256(json.dumps(list(generators)).encode()).hexdigest()[:12]


def reviewer_label(
    name: str, generators: tuple[str, ...]
) -> tuple[tuple[str, ...], int, str | None]:
    """``(label set, Label_B, name kept)`` for a reviewer naming generator ``name`` of an image
    scored on ``generators``: its own class when the set has it; else ``other`` (added to the set
    when absent) with the normalised name kept. Raises ValueError for an unusable name."""
    if name in generators[1:]:
        return generators, generators.index(name), None
    name = normalise_generator(name)
    if name in generators[1:]:
        return generators, generators.index(name), None
    if OTHER_GENERATOR not in generators:
        generators = (*generators, OTHER_GENERATOR)
    kept = None if name == OTHER_GENERATOR else name
    return generators, generators.index(OTHER_GENERATOR), kept

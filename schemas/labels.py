"""Label taxonomy.

Task A: 0 human, 1 AI-generated. Task B uses the CT2 / Defactify encoding: 0 real (COCO),
1 SD 2.1, 2 SDXL, 3 SD 3, 4 DALL-E 3, 5 Midjourney 6. A model may be trained on another generator
list; that list travels with its checkpoint, so code that reads a model's output uses the model's
list, and these constants are the default.
"""

from __future__ import annotations

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

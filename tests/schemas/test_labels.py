"""The label taxonomy: Task A, the CT2 generator list, decisions."""

from __future__ import annotations

import pytest

from schemas.labels import (
    GENERATOR_DISPLAY,
    GENERATORS,
    TASK_A,
    UNKNOWN_GENERATOR,
    Decision,
    generator_name,
)

pytestmark = pytest.mark.unit


def test_task_a_encoding() -> None:
    assert TASK_A == ("human", "ai_generated")


def test_ct2_encoding_of_task_b() -> None:
    assert GENERATORS == ("real", "sd21", "sdxl", "sd3", "dalle3", "midjourney6")
    assert set(GENERATOR_DISPLAY) == set(GENERATORS)
    assert UNKNOWN_GENERATOR not in GENERATORS


def test_decisions_match_task_a_names() -> None:
    assert {Decision.AI_GENERATED, Decision.HUMAN} == set(TASK_A)
    assert Decision("needs_review") is Decision.NEEDS_REVIEW


@pytest.mark.parametrize(("label_b", "name"), [(0, "real"), (3, "sd3"), (5, "midjourney6")])
def test_generator_name(label_b: int, name: str) -> None:
    assert generator_name(label_b) == name


def test_generator_name_uses_the_model_list() -> None:
    assert generator_name(1, ("real", "flux")) == "flux"


@pytest.mark.parametrize("label_b", [-1, 6])
def test_generator_name_out_of_range(label_b: int) -> None:
    with pytest.raises(ValueError, match=r"outside 0\.\.5"):
        generator_name(label_b)

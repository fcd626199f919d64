"""Label sets as data: generator names with a family, ``other``, ``unknown``, a reviewer's new
name, and the messages that carry a model's label set."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.labels import (
    GENERATORS,
    OTHER_GENERATOR,
    check_label_set,
    generator_family,
    label_set_id,
    normalise_generator,
    reviewer_label,
)
from schemas.messages import ReviewDecision, Verdict

pytestmark = pytest.mark.unit

SHA = "ab" * 32
GROWN = (*GENERATORS, "flux/1-dev", "openai/gpt-image-1", OTHER_GENERATOR)


@pytest.mark.parametrize(
    ("text", "name", "family"),
    [
        ("flux/1-dev", "flux/1-dev", "flux"),
        (" OpenAI/GPT-Image-1 ", "openai/gpt-image-1", "openai"),
        ("Midjourney 7", "midjourney-7", None),
        ("sd3.5+turbo", "sd3.5+turbo", None),
    ],
)
def test_generator_names_may_carry_a_family(text: str, name: str, family: str | None) -> None:
    assert normalise_generator(text) == name
    assert generator_family(name) == family


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "h",  # a key, not a name
        "unknown",  # the abstention, never a class
        "real",  # class 0 of every set
        "a/b/c",
        "/flux",
        "flux/",
        "../etc/passwd",
        "x" * 65,
        "flux\x00",
        "<script>",
        "dall\u00b7e",
        "-flux",
        "ai",  # answers and decisions a reviewer might type, never a generator
        "Skip",
        "needs_review",
        "human",
        "other/x",  # "other" is a class, not a family
        "unknown/x",
        "flux/real",
    ],
)
def test_hostile_or_reserved_names_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match=r"generator name|reserved"):
        normalise_generator(text)


def test_a_label_set_is_real_first_then_distinct_names() -> None:
    check_label_set(GROWN)
    for bad in [
        ("real",),
        ("sdxl", "real"),
        ("real", "sdxl", "sdxl"),
        ("real", "unknown"),
        ("real", "Bad Name"),
        ("real", "flux\n"),
        ("real", *(f"g{i}" for i in range(300))),
    ]:
        with pytest.raises(ValueError, match=r"label set|generator name|reserved"):
            check_label_set(bad)


def test_the_label_set_id_changes_with_names_and_order() -> None:
    assert label_set_id(GENERATORS) == label_set_id(list(GENERATORS))
    assert label_set_id(GENERATORS) != label_set_id(GROWN)
    assert label_set_id(GENERATORS) != label_set_id(("real", *reversed(GENERATORS[1:])))


def test_a_reviewer_names_a_class_of_the_set_or_a_new_generator_kept_beside_other() -> None:
    assert reviewer_label("sdxl", GENERATORS) == (GENERATORS, 2, None)
    # A new name: "other" is added to a set that lacks it, and the name is kept.
    labels, label_b, kept = reviewer_label("Flux/1-Dev", GENERATORS)
    assert (labels, label_b, kept) == ((*GENERATORS, "other"), 6, "flux/1-dev")
    # A set with "other" keeps its order; a set naming the generator takes it as its class.
    assert reviewer_label("ideogram/3", GROWN) == (GROWN, GROWN.index("other"), "ideogram/3")
    assert reviewer_label("FLUX/1-dev", GROWN) == (GROWN, 6, None)
    assert reviewer_label("other", GENERATORS) == ((*GENERATORS, "other"), 6, None)
    with pytest.raises(ValueError, match="reserved"):
        reviewer_label("unknown", GENERATORS)


def verdict(**changes: object) -> Verdict:
    fields: dict[str, object] = {
        "event_id": "e-1",
        "image_sha256": SHA,
        "p_ai": 0.9,
        "decision": "ai_generated",
        "generator": "flux/1-dev",
        "generator_probs": {name: 1 / len(GROWN) for name in GROWN},
        "model_name": "detector",
        "model_version": "2",
    }
    return Verdict.model_validate({**fields, **changes})


def test_a_verdicts_generator_is_checked_against_the_answering_models_set() -> None:
    assert verdict().generator == "flux/1-dev"  # not in CT2, in the model's own set
    assert verdict(generator="unknown").generator == "unknown"
    with pytest.raises(ValidationError, match="not in the answering model's label set"):
        verdict(generator="ideogram/3")
    with pytest.raises(ValidationError, match="not in the answering model's label set"):
        verdict(generator="flux/1-dev", generator_probs={n: 0.1 for n in GENERATORS})
    # Evidence and reviewers may name a generator outside the model's set.
    assert verdict(generator="ideogram/3", decided_by="evidence").generator == "ideogram/3"
    assert verdict(generator="ideogram/3", decided_by="human").generator == "ideogram/3"
    with pytest.raises(ValidationError):
        verdict(generator_probs={f"g{i}": 0.0 for i in range(300)}, generator="g1")


def decision(**changes: object) -> ReviewDecision:
    labels, label_b, kept = reviewer_label("ideogram/3", GENERATORS)
    fields: dict[str, object] = {
        "image_b64": "aGk=",
        "image_sha256": SHA,
        "label_a": 1,
        "label_b": label_b,
        "generators": labels,
        "generator_name": kept,
        "reviewer": "ann",
    }
    return ReviewDecision.model_validate({**fields, **changes})


def test_a_decision_keeps_a_new_generators_name_only_beside_other() -> None:
    kept = decision()
    assert (kept.generators[kept.label_b], kept.generator_name) == ("other", "ideogram/3")
    again = ReviewDecision.model_validate_json(kept.model_dump_json())
    assert again.generator_name == "ideogram/3"
    with pytest.raises(ValidationError, match="only with the 'other' class"):
        decision(label_b=2)
    with pytest.raises(ValidationError, match="generator name"):
        decision(generator_name="Not A Name/../x")
    with pytest.raises(ValidationError, match="need schema_version 2"):
        decision(schema_version=1)
    with pytest.raises(ValidationError, match="class 0"):
        decision(generators=("sdxl", "real", "other"), label_b=2)

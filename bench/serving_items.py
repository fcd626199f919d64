"""The items ``bench.serving`` sends: the smoke test split's images and captions as stored, and
for the base model the same images with captions of 32 tokens that never repeat."""

from __future__ import annotations

from pathlib import Path

Item = tuple[bytes, str | None]
"""Image bytes and caption, as a producer sends them."""


def workload() -> tuple[list[Item], list[tuple[Item, int]]]:
    """Images and captions of the smoke test split as stored, and (item, Label_A) normalised."""
    from training.data import load_split

    stored = load_split("smoke", "test", normalise=False)
    normalised = load_split("smoke", "test")
    items = [(s.image, s.caption) for s in stored]
    labelled = [((s.image, s.caption), s.label_a) for s in normalised]
    return items, labelled


CAPTION_TOKENS = 32
"""The base model's goals are set for captions of this many tokens."""
_SENTENCE = (
    "a photo of the old harbour at dusk with fishing boats and gulls over grey water taken "
    "from the north pier on a cold windy evening after rain"
)


def distinct_captions(items: list[Item], checkpoint: Path, copies: int = 8) -> list[Item]:
    """The workload's images, ``copies`` times over, each with a caption of
    :data:`CAPTION_TOKENS` tokens in ``checkpoint``'s tokenizer ([CLS] and [SEP] included) that
    no other item has: what the base model's goals ask, and what no caption cache answers (the
    smoke set's captions repeat, and a served model would run its text encoder on few of them).
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    words = _SENTENCE.split()
    out: list[Item] = []
    for index in range(copies * len(items)):
        start = index % len(words)
        rotated = [*words[start:], *words[:start]] * 3
        ids = tokenizer(
            f"upload {index} " + " ".join(rotated), truncation=True, max_length=CAPTION_TOKENS
        )["input_ids"]
        out.append((items[index % len(items)][0], tokenizer.decode(ids, skip_special_tokens=True)))
    return out

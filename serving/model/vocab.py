"""WordPiece vocabularies generated offline, for presets that have no pre-trained tokenizer.

``tiny`` uses a small vocabulary from a fixed word list; ``base-random`` pads the same layout to
BERT-base's 30,522 entries so that its embedding table has the real model's shape. Every single
character and its ``##`` continuation are included, so any text tokenises without ``[UNK]`` for
ASCII and only unseen symbols fall back to it.
"""

from __future__ import annotations

import string
from typing import Final

from transformers import BertTokenizer

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
BERT_BASE_VOCAB_SIZE: Final[int] = 30_522

# Common English words and the vocabulary of photo captions (COCO-style): enough for short
# captions to become word tokens rather than strings of characters.
_WORD_TEXT: Final[str] = """
a an the this that these those it its is are was were be been being has have had do does did
of in on at by for with from to into onto over under above below near next behind between
through across along around up down out off and or but not no some many several few two three
four five one other another each every all both more most very while as than then there here
who what which where when why how he she they we you i him her them his their our your my
man woman men women person people child children boy girl baby player crowd group family team
dog dogs cat cats horse horses cow cows sheep bird birds elephant elephants giraffe zebra bear
bears animal animals fish duck ducks
car cars truck bus train plane airplane bike bicycle motorcycle boat boats road street city
building buildings house home kitchen room bathroom bedroom table tables chair chairs bed couch
window door wall floor desk computer laptop phone screen television book books clock sign
light lights lamp picture photo image painting view scene area field grass tree trees park
beach ocean sea water lake river mountain mountains hill sky cloud clouds snow rain sun sunset
night day morning evening food plate bowl pizza sandwich cake fruit apple apples banana bananas
orange oranges vegetables coffee cup glass bottle wine dinner lunch breakfast
red blue green yellow white black brown gray grey orange pink purple dark bright colorful
large small big little tall long short old young new wooden metal stone open empty full
sitting standing walking running riding eating drinking holding looking playing flying
parked lying laying waiting watching carrying wearing covered filled made taken shown
close closeup portrait landscape detailed realistic photograph photorealistic rendering
digital art style high quality lighting cinematic shot camera lens background foreground
front side top bottom left right center middle together alone outside inside outdoor indoor
space spacesuit suit astronaut flag saucer tabby rocket launch pad deep galaxies galaxy stars
human eye retina blood vessels stained tissue sample microscope tripod weathered brick bricks
rows patch blades gravel path stones ground surface moon craters coins collection natural
showing snapshot
"""


def vocabulary(size: int | None = None) -> list[str]:
    """The generated vocabulary in id order; padded with ``[unusedN]`` up to ``size``.

    Special tokens sit where BERT puts them when padding to BERT's size ([PAD] 0, [UNK] 100,
    [CLS] 101, [SEP] 102, [MASK] 103); otherwise they take ids 0-4.
    """
    symbols = [*string.ascii_lowercase, *string.digits, *string.punctuation]
    body = [*symbols, *(f"##{s}" for s in symbols)]
    seen = set(body)
    body += [w for w in dict.fromkeys(_WORD_TEXT.split()) if w not in seen]
    if size is None:
        return [PAD, UNK, CLS, SEP, MASK, *body]
    unused = (f"[unused{i}]" for i in range(size))
    tokens = [PAD, *(next(unused) for _ in range(99)), UNK, CLS, SEP, MASK, *body]
    if len(tokens) > size:
        raise ValueError(f"a vocabulary of {size} entries cannot hold the {len(tokens)} base ones")
    tokens += [next(unused) for _ in range(size - len(tokens))]
    return tokens


def generated_tokenizer(size: int | None, max_length: int) -> BertTokenizer:
    """A lower-casing WordPiece tokenizer over :func:`vocabulary`, built without any download."""
    vocab = {token: index for index, token in enumerate(vocabulary(size))}
    return BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=max_length)

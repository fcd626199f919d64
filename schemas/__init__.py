"""Messages, records, labels and limits shared by every part of aigis.

This package imports nothing else of ours: everything else imports it.
"""

from schemas.codec import decode, encode
from schemas.errors import AigisError, SchemaError
from schemas.labels import GENERATORS, TASK_A, Decision
from schemas.messages import (
    SCHEMA_VERSION,
    DeadLetter,
    ImageEvent,
    PseudoLabel,
    ReviewDecision,
    ReviewItem,
    Timings,
    Verdict,
)

__all__ = [
    "GENERATORS",
    "SCHEMA_VERSION",
    "TASK_A",
    "AigisError",
    "DeadLetter",
    "Decision",
    "ImageEvent",
    "PseudoLabel",
    "ReviewDecision",
    "ReviewItem",
    "SchemaError",
    "Timings",
    "Verdict",
    "decode",
    "encode",
]

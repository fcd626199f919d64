"""The ``evidence`` settings group (``AIGIS_EVIDENCE__*``): what the worker reads from an image
besides its pixels, and what that may do to a verdict. A group of ``schemas.settings.Settings``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

Strength = Literal["verified", "signed", "tampered", "claimed", "similar"]
"""How much a piece of evidence proves, strongest first: ``verified`` (a C2PA signature that
validates and chains to a trust anchor), ``signed`` (one that validates from an issuer not listed),
``tampered`` (one that does not validate), ``claimed`` (unsigned metadata), ``similar`` (a
near-duplicate of an image already judged)."""


class EvidenceSettings(BaseModel):
    """What the worker reads from an image besides its pixels, and what that evidence may do to a
    verdict (the rule of :func:`schemas.decision.fuse`); see docs/evidence.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    """Read provenance and generator metadata of every image the exact cache does not answer."""
    trust_anchors_file: Path | None = None
    """PEM file of the C2PA trust anchors (root certificates) whose signed manifests may decide a
    verdict on their own; unset, no issuer is trusted and a signature is evidence only."""
    ocsp_fetch: bool = False
    """Let the C2PA reader ask a certificate's OCSP responder over the network; off, manifests are
    validated offline (remote manifests are never fetched)."""
    provenance_decides: bool = True
    """A manifest whose signature validates, chains to a trust anchor and declares generative AI
    makes the verdict ``ai_generated`` (``decided_by: provenance``) whatever the model says."""
    skip_model_when_proven: bool = False
    """Send no image that provenance decided (above) to the model: its verdict has ``p_ai`` 1.0
    from the manifest, no generator probabilities, and is not cached (docs/evidence.md)."""
    review_strengths: frozenset[Strength] = frozenset(get_args(Strength))
    """Strengths of evidence that raise a ``human`` verdict to ``needs_review`` (``verified``
    matters here only when ``provenance_decides`` is off)."""
    ai_source_types: frozenset[str] = frozenset(
        {"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"}
    )
    """IPTC digital source types (the last part of the IPTC URI) that declare generative AI, in a
    C2PA manifest or in plain XMP."""
    max_text_bytes: Annotated[int, Field(ge=256)] = 64 * 1024
    """Largest metadata text read (a PNG text chunk, inflated; an EXIF comment); a larger one is
    ignored with a reason, unread."""
    max_xmp_bytes: Annotated[int, Field(ge=256)] = 256 * 1024
    """Largest XMP packet scanned; a larger one is ignored with a reason."""
    near_duplicates: bool = True
    """Look up perceptual (PDQ) hashes of cache misses among the images already scored."""
    reuse_distance: Annotated[int, Field(ge=0, le=31)] = 8
    """A near-duplicate within this Hamming distance is answered from the matched verdict,
    unscored; PDQ also matches local edits (inpainting), so keep it tight."""
    match_distance: Annotated[int, Field(ge=0, le=31)] = 31
    """A near-duplicate within this distance (and beyond ``reuse_distance``) is scored and
    carries the match as evidence."""
    min_quality: Annotated[int, Field(ge=0, le=100)] = 50
    """PDQ quality below which an image (flat, nearly featureless) is neither looked up nor
    stored: its hash matches too much."""
    match_rotations: bool = False
    """Also match copies rotated by 90, 180 or 270 degrees, mirrored or not (PDQ's eight dihedral
    hashes): four times the search of the image and its left-right mirror alone, and eight hashes
    to compute instead of two."""
    hash_side: Annotated[int, Field(ge=64, le=1024)] = 128
    """Images are decoded at about this short side (a JPEG by its decoder) and then resized to
    PDQ's 64x64 before hashing."""

    @model_validator(mode="after")
    def _distances_ordered(self) -> EvidenceSettings:
        if self.reuse_distance > self.match_distance:
            raise ValueError("evidence.reuse_distance must not exceed evidence.match_distance")
        return self

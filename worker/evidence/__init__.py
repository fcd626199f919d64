"""The evidence stage: what an image proves about its origin besides its pixels. Torch-free.

:class:`EvidenceReader` reads the C2PA manifest (:mod:`worker.evidence.provenance`) and the
generator metadata (:mod:`worker.evidence.metadata`) of one image. It never raises for what the
image holds: whatever it cannot read is left out with a reason in ``Reading.ignored``, and the
verdict goes on without it. What the signals do to a decision is :func:`schemas.decision.fuse`.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from schemas.settings_evidence import EvidenceSettings
from worker.evidence.metadata import Reading, read_metadata
from worker.evidence.provenance import ProvenanceReader, TrustAnchorsError

__all__ = ["EvidenceReader", "Reading", "TrustAnchorsError"]

log = structlog.get_logger(__name__)


class EvidenceReader:
    """Reads the signals of images; one per worker. Raises TrustAnchorsError at construction
    when the configured trust-anchor file cannot be read."""

    def __init__(self, settings: EvidenceSettings) -> None:
        self._settings = settings
        self._provenance = ProvenanceReader(settings)

    def close(self) -> None:
        self._provenance.close()

    def read(self, data: bytes) -> Reading:
        """The signals of ``data``, strongest reader first; never raises for its content."""
        reading = Reading()
        s = self._settings
        _guarded("c2pa", reading, lambda: self._provenance.read(data, reading))
        _guarded(
            "metadata",
            reading,
            lambda: read_metadata(
                data,
                reading,
                ai_source_types=s.ai_source_types,
                max_text=s.max_text_bytes,
                max_xmp=s.max_xmp_bytes,
            ),
        )
        return reading


def _guarded(step: str, reading: Reading, read: Callable[[], None]) -> None:
    try:
        read()
    except MemoryError:
        raise  # this process is short of memory, which says nothing of the image
    except Exception as exc:  # a reader's bug must cost the evidence, not the event
        log.warning("evidence_reader_failed", step=step, error=type(exc).__name__)
        reading.ignored.append(f"{step}_failed")

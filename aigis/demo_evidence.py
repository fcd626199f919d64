"""The demo's evidence step: images that carry each kind of evidence, and a re-encoded copy of
an image already judged, published together; the table of how each was decided."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from rich.table import Table

from schemas import Verdict

if TYPE_CHECKING:
    from aigis.samples import Credential


def trust_anchor(root: Path) -> Credential:
    """A signing credential for the demo's manifests, its root written to ``root`` (the worker's
    trust-anchor file)."""
    from aigis import samples

    credential = samples.credential()
    root.write_text(credential.root_pem)
    return credential


def sample_images(credential: Credential, judged: bytes) -> dict[str, bytes]:
    """What the step publishes, by a name the table shows; ``judged`` is an image the demo
    published before (its copy is answered from that verdict)."""
    from aigis import samples
    from serving.torchserve.watermark import embed_sdxl_watermark

    unlisted = samples.credential()
    image = samples.photo(30, (512, 512))
    copy = io.BytesIO()
    Image.open(io.BytesIO(judged)).convert("RGB").save(copy, "JPEG", quality=60)
    return {
        "C2PA, listed issuer": samples.signed_jpeg(credential, samples.photo(31)),
        "C2PA, unlisted issuer": samples.signed_jpeg(unlisted, samples.photo(32)),
        "C2PA, changed after signing": samples.tampered(
            samples.signed_jpeg(credential, samples.photo(33))
        ),
        "A1111 PNG": samples.a1111_png(samples.photo(34)),
        "ComfyUI PNG": samples.comfyui_png(samples.photo(35)),
        "EXIF Software": samples.exif_jpeg(samples.photo(36)),
        "XMP CreatorTool": samples.xmp_jpeg(samples.photo(37), samples.xmp_packet("Adobe Firefly")),
        "SDXL watermark": samples.png(embed_sdxl_watermark(image)),
        "JPEG q60 copy of a judged image": copy.getvalue(),
    }


def evidence_table(names: Mapping[str, str], verdicts: Mapping[str, Verdict]) -> Table:
    """One row per published image: its evidence, the decision and what it rests on."""
    table = Table(title="images with evidence beyond their pixels")
    for column in ("image", "evidence (strength)", "p_ai", "decision", "by", "generator"):
        table.add_column(column)
    for event_id, name in names.items():
        v = verdicts[event_id]
        signals = ", ".join(f"{e.kind} ({e.strength})" for e in v.evidence or []) or "none"
        if v.near_duplicate_of is not None:
            near = v.near_duplicate_of
            signals = f"copy of {near.image_sha256[:12]} at distance {near.distance}"
        by = "cache (near-duplicate)" if v.near_duplicate_of else str(v.decided_by)
        table.add_row(name, signals, f"{v.p_ai:.3f}", v.decision.value, by, v.generator)
    return table

"""The demo's evidence step (images that carry each kind of evidence, and a re-encoded copy of
an image already judged, published together; the table of how each was decided) and its review
console's login and address line."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from rich.table import Table

from schemas import ImageEvent, Verdict
from schemas.settings import Settings

if TYPE_CHECKING:
    from aigis.samples import Credential


def trust_anchor(root: Path) -> Credential:
    """A signing credential for the demo's manifests, its root written to ``root`` (the worker's
    trust-anchor file)."""
    from aigis import samples

    credential = samples.credential()
    root.write_text(credential.root_pem)
    return credential


def evidence_events(credential: Credential, prefix: str) -> tuple[dict[str, str], list[ImageEvent]]:
    """The step's events (ids ``<prefix>-NN``, source ``demo``) and what each id shows. The copy
    of the smoke set's first test image keeps that image's caption: the cache's namespace
    includes it."""
    from training.data import load_split

    judged = load_split("smoke", "test")[0]
    names: dict[str, str] = {}
    events = []
    for i, (name, image) in enumerate(sample_images(credential, judged.image).items()):
        caption = judged.caption if name.startswith("JPEG") else None
        events.append(ImageEvent.inline(f"{prefix}-{i:02d}", image, caption=caption, source="demo"))
        names[events[-1].event_id] = name
    return names, events


def add_console_login(database_url: str, password: str) -> None:
    """The demo's reviewer login ``demo`` in the console's database."""
    from aigis.console import auth
    from aigis.console.db import open_database

    engine = open_database(database_url)
    auth.set_reviewer(engine, "demo", password, "reviewer")
    engine.dispose()


def console_line(settings: Settings, log: Path, password: str, exited: bool) -> str:
    """Where the demo's review console is and how to log in, or that it exited."""
    review = settings.review
    if exited:
        return f"the review console exited (is port {review.port} taken?); its log is {log}"
    return (
        f"the review console: http://{review.host}:{review.port}/ "
        f"(login demo, password {password}; log {log})"
    )


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

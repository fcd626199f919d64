"""Evidence through the real worker (Kafka, Redis, TorchServe with the tiny model): what each
artefact proves, how it changes the decision, and near-duplicates answered from the cache."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from aigis import samples as art
from schemas import Decision, ImageEvent
from schemas.settings import Settings
from serving.torchserve.watermark import embed_sdxl_watermark
from tests.streams import CountingClient, drain, publish_events, run_worker
from worker.cache import sha256_hex
from worker.neardup import pdq

pytestmark = pytest.mark.integration


def _settings(
    base: Settings, tmp_path: Path, root_pem: str | None, *, model_says: Decision
) -> Settings:
    anchors = None
    if root_pem is not None:
        anchors = tmp_path / "anchors.pem"
        anchors.write_text(root_pem)
    # The tiny model is untrained: bands that put every p_ai in one decision.
    bands = (
        {"human_threshold": 0.9999, "ai_threshold": 1.0}
        if model_says is Decision.HUMAN
        else {"human_threshold": 0.0, "ai_threshold": 1e-9}
    )
    return base.model_copy(
        update={
            "worker": base.worker.model_copy(update=bands),
            "evidence": base.evidence.model_copy(update={"trust_anchors_file": anchors}),
        }
    )


def _by_id(settings: Settings, expect: int) -> dict[str, Any]:
    return {v.event_id: v for v in drain(settings, "verdicts", expect=expect, finished=True)}


def test_each_kind_of_evidence_and_the_decision_it_makes(
    worker_settings: Settings, tmp_path: Path
) -> None:
    cred, other = art.credential(), art.credential()
    settings = _settings(worker_settings, tmp_path, cred.root_pem, model_says=Decision.HUMAN)
    trusted = art.signed_jpeg(cred, art.photo(10))
    images = {
        "trusted": trusted,
        "unlisted": art.signed_jpeg(other, art.photo(11), agent="Adobe Firefly"),
        "tampered": art.tampered(art.signed_jpeg(cred, art.photo(12))),
        "a1111": art.a1111_png(art.photo(13)),
        "comfyui": art.comfyui_png(art.photo(14)),
        "exif": art.exif_jpeg(art.photo(15)),
        "plain": art.jpeg(art.photo(16)),
        "watermark": art.png(embed_sdxl_watermark(art.photo(17, (512, 512)))),
    }
    publish_events(settings, [ImageEvent.inline(k, v) for k, v in images.items()])
    run_worker(settings)
    got = _by_id(settings, len(images))
    assert set(got) == set(images)

    def summary(event_id: str) -> tuple[object, ...]:
        v = got[event_id]
        signals = [(e.kind, e.strength) for e in v.evidence]
        return v.decision, v.decided_by, v.generator, signals

    review, evidence = Decision.NEEDS_REVIEW, "evidence"
    expected = {
        "trusted": (Decision.AI_GENERATED, "provenance", "dalle3", [("c2pa", "verified")]),
        "unlisted": (review, evidence, "adobe-firefly", [("c2pa", "signed")]),
        "tampered": (review, evidence, "dalle3", [("c2pa", "tampered")]),
        "a1111": (review, evidence, "sdxl", [("a1111_parameters", "claimed")]),
        "comfyui": (review, evidence, "sd3", [("comfyui_graph", "claimed")]),
        "exif": (review, evidence, "midjourney6", [("exif_software", "claimed")]),
        "plain": (Decision.HUMAN, "model", "real", []),
        "watermark": (review, evidence, "sdxl", [("sd_watermark", "claimed")]),
    }
    assert {k: summary(k) for k in images} == expected
    # Review items show the evidence; nothing evidence decided becomes a pseudo-label.
    items = drain(settings, "review", expect=6, finished=True)
    assert {i.verdict.event_id: len(i.verdict.evidence) for i in items} == dict.fromkeys(
        ("unlisted", "tampered", "a1111", "comfyui", "exif", "watermark"), 1
    )
    labels = drain(settings, "pseudo-labels", expect=0, finished=True)
    assert {p.event_id for p in labels} <= {"plain"}

    # The same signed image again is a cache hit that keeps its evidence and decision.
    publish_events(settings, [ImageEvent.inline("trusted-again", trusted)])
    run_worker(settings)
    again = _by_id(settings, len(images) + 1)["trusted-again"]
    assert again.cached
    assert (again.decision, again.decided_by) == (Decision.AI_GENERATED, "provenance")
    assert again.evidence == got["trusted"].evidence


def _encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, fmt, **options)
    return buffer.getvalue()


def test_near_duplicates_are_answered_from_the_first_verdict_or_carry_it_as_evidence(
    worker_settings: Settings, tmp_path: Path
) -> None:
    settings = _settings(worker_settings, tmp_path, None, model_says=Decision.AI_GENERATED)
    # Tighter than the default, so that some copies (JPEG q60, a mirrored rotation: 4 bits) are
    # evidence only and the others (2 bits) are answered from the first verdict.
    evidence = {"reuse_distance": 3, "match_rotations": True}
    settings = settings.model_copy(
        update={"evidence": settings.evidence.model_copy(update=evidence)}
    )
    original = art.photo(20, (256, 256))
    first = _encode(original, "JPEG", quality=95)
    flat = _encode(Image.new("RGB", (64, 64), (90, 90, 90)), "PNG")
    publish_events(
        settings, [ImageEvent.inline("original", first), ImageEvent.inline("flat", flat)]
    )
    run_worker(settings)
    firsts = _by_id(settings, 2)

    copies = {
        "q60": _encode(original, "JPEG", quality=60),
        "half": _encode(original.resize((128, 128)), "PNG"),
        "webp": _encode(original, "WEBP", quality=70),
        "mirror": _encode(original.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "JPEG", quality=90),
        "rot90": _encode(original.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=90),
        "transverse": _encode(original.transpose(Image.Transpose.TRANSVERSE), "JPEG", quality=90),
    }
    others = {
        "unrelated": _encode(art.photo(21, (256, 256)), "JPEG", quality=95),
        "flat-again": _encode(Image.new("RGB", (64, 64), (91, 91, 91)), "PNG"),
    }
    publish_events(settings, [ImageEvent.inline(k, v) for k, v in {**copies, **others}.items()])
    client = CountingClient(settings)
    worker, _ = run_worker(settings, client=client)
    client.close()
    got = _by_id(settings, 2 + len(copies) + len(others))

    base = pdq(first, settings.evidence.hash_side)
    assert base is not None
    reuse = settings.evidence.reuse_distance
    reused = 0
    for name, data in copies.items():
        hashed = pdq(data, settings.evidence.hash_side)
        assert hashed is not None
        distance = min(
            (int.from_bytes(base.hash) ^ int.from_bytes(h)).bit_count() for h in hashed.orientations
        )
        assert distance <= settings.evidence.match_distance, name
        v = got[name]
        if distance <= reuse:
            reused += 1
            assert v.near_duplicate_of is not None, name
            assert v.near_duplicate_of.image_sha256 == sha256_hex(first)
            assert v.near_duplicate_of.distance == distance
            assert v.cached
            assert v.p_ai == firsts["original"].p_ai
        else:
            assert v.near_duplicate_of is None, name
            assert not v.cached
            assert [e.kind for e in v.evidence] == ["near_duplicate"], name
            assert sha256_hex(first) in v.evidence[0].value
    assert 0 < reused < len(copies)
    for name in others:
        assert got[name].near_duplicate_of is None, name
        assert not got[name].evidence, name
    assert client.items_sent == len(copies) - reused + len(others)
    sample = worker.metrics.registry.get_sample_value
    assert sample("aigis_worker_near_duplicates_reused_total") == reused

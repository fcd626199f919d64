"""The evidence reader and the fusion rule on real artefacts made here, and on hostile files."""

from __future__ import annotations

import io
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from aigis import samples as art
from schemas import Decision
from schemas.decision import fuse
from schemas.messages import Evidence
from schemas.settings_evidence import EvidenceSettings
from tests.worker.hostile import chunk, recursive_xmp, with_chunks, xmp_chunk
from worker.evidence import EvidenceReader, TrustAnchorsError

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def cred() -> art.Credential:
    return art.credential()


@pytest.fixture(scope="module")
def signed(cred: art.Credential) -> bytes:
    return art.signed_jpeg(cred, art.photo(1))


def reader(tmp_path: Path, anchors: str | None = None, **settings: object) -> EvidenceReader:
    path = None
    if anchors is not None:
        path = tmp_path / "anchors.pem"
        path.write_text(anchors)
    return EvidenceReader(EvidenceSettings(trust_anchors_file=path, **settings))


def only(data: bytes, r: EvidenceReader) -> Evidence:
    reading = r.read(data)
    assert len(reading.signals) == 1, reading
    return reading.signals[0]


def test_a_manifest_chained_to_a_listed_root_is_verified(
    tmp_path: Path, cred: art.Credential, signed: bytes
) -> None:
    signal = only(signed, reader(tmp_path, cred.root_pem))
    assert (signal.kind, signal.strength, signal.generator) == ("c2pa", "verified", "dalle3")
    assert "trainedAlgorithmicMedia" in signal.value
    assert "aigis-test-generator" in signal.value
    assert signal.value.endswith("signature trusted")


def test_an_unlisted_issuer_is_signed_and_a_changed_image_is_tampered(
    tmp_path: Path, cred: art.Credential, signed: bytes
) -> None:
    assert only(signed, reader(tmp_path)).strength == "signed"
    other = art.credential()
    assert only(signed, reader(tmp_path, other.root_pem)).strength == "signed"
    broken = only(art.tampered(signed), reader(tmp_path, cred.root_pem))
    assert broken.strength == "tampered"
    assert broken.value.endswith("signature invalid")


def test_generator_metadata_of_each_kind(tmp_path: Path) -> None:
    r = reader(tmp_path)
    image = art.photo(2)
    expected = {
        "a1111_parameters": (art.a1111_png(image), "sdxl"),
        "comfyui_graph": (art.comfyui_png(image), "sd3"),
        "exif_software": (art.exif_jpeg(image), "midjourney6"),
        "novelai": (art.png(image, {"Software": "NovelAI", "Source": "NovelAI Diffusion"}), None),
    }
    for kind, (data, generator) in expected.items():
        signal = only(data, r)
        assert (signal.kind, signal.strength) == (kind, "claimed")
        assert signal.generator == (generator or "novelai")
    exif = Image.Exif()
    exif[0x0131] = "NovelAI"
    png_exif = io.BytesIO()
    image.save(png_exif, "PNG", exif=exif.tobytes())
    assert only(png_exif.getvalue(), r).kind == "exif_software"  # PNG eXIf, read unloaded
    # The prompt never travels in a verdict: only the settings line of the parameters.
    assert "lighthouse" not in only(art.a1111_png(image), r).value
    xmp = r.read(art.xmp_jpeg(image, art.xmp_packet("Adobe Firefly 3"))).signals
    assert {(s.kind, s.generator) for s in xmp} == {
        ("xmp_creator_tool", "adobe-firefly"),
        ("xmp_source_type", None),
    }


def test_plain_images_and_tools_that_make_nothing_say_nothing(tmp_path: Path) -> None:
    r = reader(tmp_path)
    image = art.photo(3)
    assert r.read(art.jpeg(image)).signals == []
    assert r.read(art.exif_jpeg(image, "Adobe Photoshop 25.0")).signals == []
    camera = art.xmp_packet(
        "Canon EOS", "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"
    )
    assert r.read(art.xmp_jpeg(image, camera)).signals == []


def test_an_unreadable_trust_anchor_file_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(TrustAnchorsError, match="TRUST_ANCHORS_FILE"):
        EvidenceReader(EvidenceSettings(trust_anchors_file=tmp_path / "missing.pem"))
    (tmp_path / "empty.pem").write_text("not a certificate")
    with pytest.raises(TrustAnchorsError, match="holds no PEM certificate"):
        EvidenceReader(EvidenceSettings(trust_anchors_file=tmp_path / "empty.pem"))


def test_hostile_metadata_is_ignored_with_a_reason_in_bounded_time(
    tmp_path: Path, signed: bytes
) -> None:
    r = reader(tmp_path)
    base = art.png(art.photo(4))
    cases = {
        "text_too_large": with_chunks(base, chunk(b"tEXt", b"parameters\x00" + b"S" * 10_000_000)),
        "zip_bomb_text": with_chunks(
            base, chunk(b"zTXt", b"parameters\x00\x00" + zlib.compress(b"Steps: 1, " * 10**7))
        ),
        "bad_zlib": with_chunks(base, chunk(b"zTXt", b"prompt\x00\x00not zlib at all")),
        "many_chunks": with_chunks(base, *[chunk(b"tEXt", b"x\x00y")] * 20_000),
        "huge_xmp": with_chunks(base, xmp_chunk("<x>" + "A" * 1_000_000 + "</x>")),
        "recursive_xmp": with_chunks(base, xmp_chunk(recursive_xmp())),
        "malformed_manifest": art.corrupt_manifest(signed),
    }
    for name, data in cases.items():
        started = time.monotonic()
        reading = r.read(data)
        assert time.monotonic() - started < 2.0, name
        assert not [s for s in reading.signals if s.kind != "xmp_source_type"], (name, reading)
        if name in ("text_too_large", "zip_bomb_text"):
            assert "text_too_large" in reading.ignored, name
    assert "too_many_chunks" in r.read(cases["many_chunks"]).ignored
    assert "c2pa_unreadable" in r.read(cases["malformed_manifest"]).ignored
    assert "xmp_too_large" in r.read(cases["huge_xmp"]).ignored


POLICY = EvidenceSettings()


def ev(strength: str, generator: str | None = "sdxl") -> Evidence:
    return Evidence(kind="c2pa", value="v", generator=generator, strength=strength)


@pytest.mark.parametrize(
    ("decision", "generator", "evidence", "expected"),
    [
        (Decision.HUMAN, "real", [], (Decision.HUMAN, "real", "model")),
        (Decision.HUMAN, "real", [ev("verified")], (Decision.AI_GENERATED, "sdxl", "provenance")),
        (Decision.HUMAN, "real", [ev("signed")], (Decision.NEEDS_REVIEW, "sdxl", "evidence")),
        (
            Decision.HUMAN,
            "real",
            [ev("claimed", None)],
            (Decision.NEEDS_REVIEW, "unknown", "evidence"),
        ),
        (
            Decision.NEEDS_REVIEW,
            "unknown",
            [ev("claimed")],
            (Decision.NEEDS_REVIEW, "sdxl", "model"),
        ),
        (
            Decision.AI_GENERATED,
            "dalle3",
            [ev("claimed")],
            (Decision.AI_GENERATED, "dalle3", "model"),
        ),
        (
            Decision.AI_GENERATED,
            "unknown",
            [ev("tampered")],
            (Decision.AI_GENERATED, "sdxl", "model"),
        ),
    ],
)
def test_the_fusion_rule(
    decision: Decision, generator: str, evidence: list[Evidence], expected: tuple[object, ...]
) -> None:
    fused = fuse(decision, generator, evidence, POLICY)
    assert (fused.decision, fused.generator, fused.decided_by) == expected


def test_fusion_follows_its_settings() -> None:
    quiet = EvidenceSettings(provenance_decides=False, review_strengths=frozenset({"signed"}))
    assert fuse(Decision.HUMAN, "real", [ev("claimed")], quiet).decision is Decision.HUMAN
    raised = fuse(Decision.HUMAN, "real", [ev("verified"), ev("signed")], quiet)
    assert (raised.decision, raised.decided_by) == (Decision.NEEDS_REVIEW, "evidence")


@pytest.mark.parametrize("kind", ["PNG", "JPEG"])
def test_hashing_without_rotations_gives_the_image_and_its_mirror_as_all_eight_do(
    kind: str,
) -> None:
    """Without rotations only two hashes are computed: the same two that the eight orientations
    hold, and the mirror's is the hash of the mirrored file (a lossless one)."""
    import numpy as np

    from worker.neardup import MIRROR, pdq

    rng = np.random.default_rng(7)
    field = rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)
    image = Image.fromarray(field).resize((300, 200), Image.Resampling.BICUBIC)
    files = []
    for picture in (image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)):
        buffer = io.BytesIO()
        picture.save(buffer, kind, **({"quality": 95} if kind == "JPEG" else {}))
        files.append(buffer.getvalue())
    every, two = pdq(files[0], 128), pdq(files[0], 128, rotations=False)
    assert every is not None
    assert two is not None
    assert len(every.orientations) == 8
    assert two.orientations == (every.hash, every.orientations[MIRROR])
    assert (two.quality, two.mirror, two.queries(False)) == (
        every.quality,
        every.mirror,
        every.queries(False),
    )
    with pytest.raises(ValueError, match="hashed without them"):
        two.queries(True)
    if kind == "PNG":
        mirrored = pdq(files[1], 128, rotations=False)
        assert mirrored is not None
        assert mirrored.hash == two.mirror


def test_the_near_duplicate_index_matches_by_distance_orientation_and_caption() -> None:
    from worker.neardup import MIRROR, Hashed, Match, _Index

    def hashed(first: int, **others: int) -> Hashed:
        """A hash whose orientations all equal ``first`` but those named by index (``o5=...``)."""
        values = [others.get(f"o{i}", first) for i in range(8)]
        return Hashed(tuple(v.to_bytes(32, "big") for v in values), 100)

    stored = (1 << 255) - 1
    index = _Index()
    index.extend(
        [hashed(stored).hash + b"a" * 64, hashed(stored).hash + b"b" * 64 + b":" + b"c" * 64]
    )
    near = stored ^ 0b111  # three bits off
    assert index.nearest([(hashed(near), "")], 31, True) == [Match("a" * 64, 3)]
    assert index.nearest([(hashed(near), "")], 2, True) == [None]
    # A mirrored copy is found through the hash of its mirror image, with or without rotations.
    mirrored = hashed(0, **{f"o{MIRROR}": stored})
    assert index.nearest([(mirrored, "")], 31, False) == [Match("a" * 64, 0)]
    # A rotated copy only when rotations are searched: its orientation 1 is the stored image.
    rotated = hashed(0, o1=stored ^ 1)
    assert index.nearest([(rotated, "")], 31, True) == [Match("a" * 64, 1)]
    assert index.nearest([(rotated, "")], 31, False) == [None]
    # When captions are read, only an entry with the same caption part matches; one search
    # answers several images.
    matches = index.nearest([(hashed(stored), "c" * 64), (hashed(stored), "d" * 64)], 31, True)
    assert matches[0] is not None
    assert matches[0].image_sha256 == "b" * 64
    assert matches[1] is None

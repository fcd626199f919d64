"""The hostile corpus: records a producer that is not friendly can publish, each with the one
outcome the worker owes it (a verdict, or a dead letter with a named reason).

Every input path has its malformed, oversized and adversarial twins here; a case added for a new
field, format or URI scheme belongs in the same commit as the path itself.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zipfile
import zlib
from dataclasses import dataclass

from PIL import Image

from schemas import ImageEvent, encode

VERDICT = "verdict"
"""The expected outcome of a case that is odd but legal."""


@dataclass(frozen=True)
class Case:
    name: str
    value: bytes
    outcome: str
    """``verdict``, or the reason of the dead letter the record must end as."""


def _png(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG chunk of ``kind`` holding ``data``, with its CRC."""
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def with_chunks(png: bytes, *chunks: bytes) -> bytes:
    """``png`` with ``chunks`` right after its header (where text chunks usually sit)."""
    return png[:33] + b"".join(chunks) + png[33:]


def xmp_chunk(packet: str) -> bytes:
    """An uncompressed iTXt chunk holding an XMP packet."""
    return chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + packet.encode())


def recursive_xmp() -> str:
    """An XMP packet with nested entities (a billion laughs) inside 5 000 open elements."""
    entities = "".join(
        f'<!ENTITY e{i} "{f"&e{i - 1};" * 10 if i else "&a;" * 10}">' for i in range(9)
    )
    return (
        f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">{entities}]>'
        + '<x:xmpmeta xmp:CreatorTool="' * 5_000
        + "&e8;"
        + "</x:xmpmeta>" * 5_000
    )


def evidence_cases(signed_jpeg: bytes, corrupted_manifest: bytes) -> list[Case]:
    """Images whose provenance or metadata is malformed, oversized or adversarial: the evidence
    is ignored with a reason and the image is scored (or dead-lettered where its decoder
    refuses it)."""
    png = _png(Image.effect_noise((64, 48), 50).convert("RGB"))
    bomb = zlib.compress(b"Steps: 1, " * 10**7)
    return [
        Case("c2pa_signed", _event("e-c2pa", signed_jpeg), VERDICT),
        Case("c2pa_corrupted_manifest", _event("e-c2pa-bad", corrupted_manifest), VERDICT),
        Case(
            "png_10mb_text_chunk",
            _event(
                "e-10mb",
                with_chunks(png, chunk(b"tEXt", b"parameters\x00" + b"S" * 10_000_000)),
            ),
            VERDICT,
        ),
        # Pillow refuses text that inflates past its own limit, so the image is undecodable.
        Case(
            "png_text_zip_bomb",
            _event("e-zbomb", with_chunks(png, chunk(b"zTXt", b"parameters\x00\x00" + bomb))),
            "undecodable_image",
        ),
        Case(
            "xmp_recursive",
            _event("e-xmp-rec", with_chunks(png, xmp_chunk(recursive_xmp()))),
            VERDICT,
        ),
        Case(
            "xmp_huge",
            _event("e-xmp-huge", with_chunks(png, xmp_chunk("<x>" + "A" * 2_000_000 + "</x>"))),
            VERDICT,
        ),
        Case(
            "png_many_text_chunks",
            _event("e-chunks", with_chunks(png, *[chunk(b"tEXt", b"x\x00y")] * 20_000)),
            VERDICT,
        ),
    ]


def png_header(width: int, height: int) -> bytes:
    """A valid PNG declaring ``width`` x ``height`` RGB pixels with one row of data behind it."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\x00" * 3 * min(width, 64))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _gif_animated() -> bytes:
    frames = [Image.new("P", (32, 32), i * 40) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50)
    return buffer.getvalue()


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("image.png", b"not really")
    return buffer.getvalue()


def _event(event_id: str, image: bytes, **fields: object) -> bytes:
    return encode(ImageEvent.inline(event_id, image, **fields))


def message_cases(good: bytes) -> list[Case]:
    """Records that are not (valid) image events."""
    b64 = base64.b64encode(good).decode()
    valid = {"event_id": "m", "image_b64": b64}

    def obj(**fields: object) -> bytes:
        return json.dumps({**valid, **fields}).encode()

    return [
        Case("not_json", b"\xff{ not json", "not_json"),
        Case("empty_value", b"", "not_json"),
        Case("null", b"null", "not_an_object"),
        Case("array", b"[1, 2, 3]", "not_an_object"),
        Case("string", b'"an image"', "not_an_object"),
        Case("unknown_field", obj(extra="x"), "unknown_field"),
        Case("both_images", obj(image_uri="https://example.com/a.png"), "invalid_field"),
        Case("no_image", json.dumps({"event_id": "m"}).encode(), "invalid_field"),
        Case("bad_base64", obj(image_b64="!!not*base64!!"), "bad_base64"),
        Case("oversized_inline", obj(image_b64="A" * (14 * 1024 * 1024)), "image_too_large"),
        Case(
            "deep_caption",
            obj(caption="x").replace(b'"x"', b"[" * 50_000 + b"]" * 50_000),
            "too_deep",
        ),
        Case("huge_number", obj(schema_version=int("9" * 4_000)), "unsupported_schema_version"),
        Case(
            "digits_over_limit", obj().replace(b"{", b'{"n": ' + b"9" * 5_000 + b",", 1), "not_json"
        ),
        Case("schema_version_true", obj(schema_version=True), "unsupported_schema_version"),
        Case("schema_version_3", obj(schema_version=3), "unsupported_schema_version"),
        Case("v1_with_v2_field", obj(schema_version=1, canary=True), "unknown_field"),
        Case("bad_event_id", obj(event_id="has spaces and ../"), "invalid_field"),
        Case("long_caption", obj(caption="c" * 5_000), "invalid_field"),
        Case("caption_not_text", obj(caption={"a": 1}), "invalid_field"),
        Case(
            "naive_produced_at", obj(event_id="naive", produced_at="2024-05-01T12:00:00"), VERDICT
        ),
        Case("nan_field", obj().replace(b"}", b', "x": NaN}'), "not_json"),
        Case(
            "uri_scheme_ftp",
            json.dumps({"event_id": "m", "image_uri": "ftp://h/a.png"}).encode(),
            "invalid_field",
        ),
        Case(
            "uri_javascript",
            json.dumps({"event_id": "m", "image_uri": "javascript:alert(1)"}).encode(),
            "invalid_field",
        ),
    ]


def image_cases() -> list[Case]:
    """Valid events whose image bytes are odd, hostile or not an image at all."""
    photo = Image.effect_noise((96, 64), 50).convert("RGB")
    jpeg = _jpeg(photo)
    rgba = photo.convert("RGBA")
    rgba.putalpha(128)
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE)
    sixteen = Image.new("I;16", (48, 48), 40_000)
    return [
        Case("truncated_jpeg", _event("i-trunc", jpeg[: len(jpeg) // 2]), "truncated_image"),
        Case("bomb_png", _event("i-bomb", png_header(20_000, 20_000)), "decompression_bomb"),
        Case(
            "svg",
            _event("i-svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>'),
            "undecodable_image",
        ),
        Case("html", _event("i-html", b"<html><body>hi</body></html>"), "undecodable_image"),
        Case("zip", _event("i-zip", _zip()), "undecodable_image"),
        Case("text", _event("i-text", b"just some text"), "undecodable_image"),
        Case("cmyk_jpeg", _event("i-cmyk", _jpeg(photo.convert("CMYK"))), VERDICT),
        Case("sixteen_bit_png", _event("i-16", _png(sixteen)), VERDICT),
        Case("palette_png", _event("i-pal", _png(palette)), VERDICT),
        Case("rgba_png", _event("i-rgba", _png(rgba)), VERDICT),
        Case("animated_gif", _event("i-gif", _gif_animated()), VERDICT),
        Case("one_pixel", _event("i-1x1", _png(Image.new("RGB", (1, 1), (9, 9, 9)))), VERDICT),
        Case("greyscale", _event("i-grey", _png(photo.convert("L"))), VERDICT),
        Case("wide_header_only", _event("i-wide", png_header(100_000, 2)), "image_too_large"),
        Case("thin_strip", _event("i-thin", png_header(16_384, 1)), "extreme_aspect_ratio"),
        Case("tall_strip", _event("i-tall", png_header(1, 16_384)), "extreme_aspect_ratio"),
        # 114 MiB if decoded whole: the model server decodes it reduced, one pass at a time.
        Case(
            "large_png",
            _event("i-large", _png(Image.new("RGB", (6300, 6300), (4, 8, 12)))),
            VERDICT,
        ),
    ]

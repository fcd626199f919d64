"""Generator metadata an image file carries: PNG text chunks, EXIF and XMP. Torch-free, bounded.

What is read, and the signal each gives (every one ``claimed``: anyone can write it):

| where | kind |
| --- | --- |
| PNG ``parameters`` (A1111, Forge), EXIF ``UserComment`` holding the same | ``a1111_parameters`` |
| PNG ``prompt`` / ``workflow`` (ComfyUI's graph) | ``comfyui_graph`` |
| PNG ``Software`` / ``Source`` / ``Comment`` of NovelAI | ``novelai`` |
| EXIF ``Software`` naming a generator | ``exif_software`` |
| XMP ``CreatorTool`` naming a generator | ``xmp_creator_tool`` |
| XMP ``DigitalSourceType`` declaring generative AI | ``xmp_source_type`` |

Bounded work on hostile files: PNG chunks are walked by their headers (at most
:data:`MAX_CHUNKS`), and only text chunks of the keywords above are read, each up to a byte
limit (inflated with a cap); XMP is scanned with linear patterns, never parsed, so entities and
nesting cost nothing. Whatever is over a limit or malformed is ignored with a reason.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from PIL import Image

from schemas.messages import Evidence
from worker.evidence.names import generator_in

MAX_CHUNKS: Final[int] = 4_096
"""PNG chunks walked before the rest of the file is ignored (real files have tens)."""

MAX_VALUE: Final[int] = 512
"""Characters of a signal's value (the message's limit)."""

_PNG_SIGNATURE: Final[bytes] = b"\x89PNG\r\n\x1a\n"
_XMP_KEYWORD: Final[str] = "XML:com.adobe.xmp"
_EXIF_CHUNK: Final[str] = "eXIf"
_KEYWORDS: Final[frozenset[str]] = frozenset(
    {"parameters", "prompt", "workflow", "Software", "Source", "Comment", _XMP_KEYWORD}
)
_EXIF_SOFTWARE: Final[int] = 0x0131
_EXIF_IFD: Final[int] = 0x8769
_EXIF_USER_COMMENT: Final[int] = 0x9286

_A1111_SETTINGS = re.compile(r"Steps: \d+, Sampler: [^\n]{0,400}")
_A1111_MODEL = re.compile(r"Model: ([^,\n]{1,128})")
_CKPT = re.compile(r'"(?:ckpt_name|unet_name|model_name)"\s*:\s*"([^"\\]{1,200})"')
_CREATOR_TOOL = re.compile(r'CreatorTool(?:\s*=\s*"([^"<]{1,256})"|>([^<]{1,256})<)', re.IGNORECASE)
_SOURCE_TYPE = re.compile(r"digitalsourcetype/([A-Za-z]{1,64})", re.IGNORECASE)


@dataclass
class Reading:
    """What one image gave: its signals, and why anything was left unread."""

    signals: list[Evidence] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    """Short reasons (``text_too_large``, ``xmp_too_large``, ``c2pa_unreadable``, ...)."""

    def add(self, kind: str, value: str, generator: str | None, strength: str) -> None:
        self.signals.append(
            Evidence(
                kind=kind,
                value=value[:MAX_VALUE],
                generator=generator[:128] if generator else None,
                strength=strength,
            )
        )


def read_metadata(
    data: bytes, reading: Reading, *, ai_source_types: frozenset[str], max_text: int, max_xmp: int
) -> None:
    """Add the metadata signals of ``data`` (PNG, JPEG, WebP, ...) to ``reading``."""
    texts: dict[str, str] = {}
    xmp: bytes | None = None
    if data.startswith(_PNG_SIGNATURE):
        # Pillow would decode every pixel of a PNG to find an eXIf chunk after the image data:
        # the walk finds it, and the XMP iTXt chunk, by the chunk headers alone.
        exif: bytes | None = None
        for keyword, text in _png_texts(data, reading, max_text, max_xmp):
            if keyword == _XMP_KEYWORD:
                xmp = text.encode()
            elif keyword == _EXIF_CHUNK:
                exif = text.encode("latin-1")
            else:
                texts.setdefault(keyword, text)
        if exif is not None:
            _exif(lambda: _parsed(exif), texts, reading, max_text)
    else:
        xmp = _exif(lambda: _opened(data), texts, reading, max_text)
    _generator_texts(texts, reading)
    if xmp is not None:
        if len(xmp) > max_xmp:
            reading.ignored.append("xmp_too_large")
        else:
            _xmp(xmp.decode("utf-8", "replace"), reading, ai_source_types)


def _png_texts(
    data: bytes, reading: Reading, max_text: int, max_xmp: int
) -> Iterator[tuple[str, str]]:
    """(keyword, text) of the PNG text chunks whose keyword is of interest, and ("eXIf", the
    EXIF block) when there is one."""
    view = memoryview(data)
    at = len(_PNG_SIGNATURE)
    for _ in range(MAX_CHUNKS):
        if at + 8 > len(data):
            return
        length, kind = struct.unpack_from(">I4s", data, at)
        body = view[at + 8 : at + 8 + length]
        at += 12 + length
        if kind == b"IEND":
            return
        if kind == b"eXIf":
            if length > max_text:
                reading.ignored.append("exif_too_large")
            else:
                # Latin-1 carries the raw bytes through unchanged.
                yield _EXIF_CHUNK, bytes(body).decode("latin-1")
            continue
        if kind not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        keyword, _, _text = bytes(body[:80]).partition(b"\x00")
        name = keyword.decode("latin-1")
        if name not in _KEYWORDS:
            continue
        xmp = name == _XMP_KEYWORD
        limit = max_xmp if xmp else max_text
        text = _chunk_text(kind, bytes(body[len(keyword) + 1 :]), limit)
        if text is None:
            too_large = "xmp_too_large" if xmp else "text_too_large"
            reading.ignored.append(too_large if length > limit else "text_unreadable")
            continue
        yield name, text
    reading.ignored.append("too_many_chunks")


def _chunk_text(kind: bytes, rest: bytes, max_text: int) -> str | None:
    """The text of a tEXt, zTXt or iTXt chunk after its keyword; None when it is over
    ``max_text`` bytes (inflated) or malformed."""
    if kind == b"tEXt":
        return rest.decode("latin-1") if len(rest) <= max_text else None
    if kind == b"zTXt":
        return _inflate(rest[1:], max_text, "latin-1")
    if len(rest) < 2:
        return None
    compressed, tail = rest[0], rest[2:]
    _language, _, tail = tail.partition(b"\x00")
    _translated, _, text = tail.partition(b"\x00")
    if compressed:
        return _inflate(text, max_text, "utf-8")
    return text.decode("utf-8", "replace") if len(text) <= max_text else None


def _inflate(data: bytes, max_text: int, encoding: str) -> str | None:
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(data, max_text + 1)
    except zlib.error:
        return None
    return None if len(text) > max_text else text.decode(encoding, "replace")


def _opened(data: bytes) -> tuple[Image.Exif, object]:
    """The EXIF and XMP of a JPEG, WebP, ... as Pillow reads them from the file's header."""
    with Image.open(io.BytesIO(data)) as image:
        return image.getexif(), image.info.get("xmp")


def _parsed(raw: bytes) -> tuple[Image.Exif, object]:
    exif = Image.Exif()
    exif.load(raw)
    return exif, None


def _exif(
    read: Callable[[], tuple[Image.Exif, object]],
    texts: dict[str, str],
    reading: Reading,
    max_text: int,
) -> bytes | None:
    """EXIF Software and UserComment into ``texts``; returns the XMP packet Pillow found."""
    try:
        exif, xmp = read()
        software = exif.get(_EXIF_SOFTWARE)
        comment = exif.get_ifd(_EXIF_IFD).get(_EXIF_USER_COMMENT)
    except Exception:  # a malformed EXIF block raises anything from Pillow's parsers
        reading.ignored.append("exif_unreadable")
        return None
    if isinstance(software, str):
        texts.setdefault("exif:Software", software[:max_text])
    if isinstance(comment, bytes):
        if len(comment) > max_text:
            reading.ignored.append("text_too_large")
        else:
            texts.setdefault("exif:UserComment", _user_comment(comment))
    return xmp if isinstance(xmp, bytes) else None


def _user_comment(raw: bytes) -> str:
    """EXIF UserComment: an 8-byte character code, then the text (UTF-16 of either order)."""
    code, body = raw[:8], raw[8:]
    if code.startswith(b"UNICODE"):
        big = body.decode("utf-16-be", "replace")
        return big if "Steps:" in big else body.decode("utf-16-le", "replace")
    return body.decode("utf-8", "replace")


def _generator_texts(texts: dict[str, str], reading: Reading) -> None:
    for key in ("parameters", "exif:UserComment"):
        settings = _A1111_SETTINGS.search(texts.get(key, ""))
        if settings:
            model = _A1111_MODEL.search(settings.group())
            named = generator_in(model.group(1)) if model else None
            reading.add("a1111_parameters", settings.group(), named or "a1111", "claimed")
            break
    prompt, workflow = texts.get("prompt", ""), texts.get("workflow", "")
    if '"class_type"' in prompt or '"nodes"' in workflow:
        ckpt = _CKPT.search(prompt) or _CKPT.search(workflow)
        value = f"ComfyUI graph, checkpoint {ckpt.group(1)}" if ckpt else "ComfyUI graph"
        named = generator_in(ckpt.group(1)) if ckpt else None
        reading.add("comfyui_graph", value, named or "comfyui", "claimed")
    if "novelai" in texts.get("Software", "").lower():
        source = texts.get("Source", "")
        value = f"Software: NovelAI; Source: {source[:200]}" if source else "Software: NovelAI"
        reading.add("novelai", value, generator_in(source) or "novelai", "claimed")
    software = texts.get("exif:Software", "")
    named = generator_in(software)
    if named:
        reading.add("exif_software", f"Software: {software[:200]}", named, "claimed")


def _xmp(packet: str, reading: Reading, ai_source_types: frozenset[str]) -> None:
    tool = _CREATOR_TOOL.search(packet)
    if tool:
        text = tool.group(1) or tool.group(2) or ""
        named = generator_in(text)
        if named:
            reading.add("xmp_creator_tool", f"CreatorTool: {text}", named, "claimed")
    for match in _SOURCE_TYPE.finditer(packet):
        if match.group(1) in ai_source_types:
            reading.add("xmp_source_type", f"DigitalSourceType: {match.group(1)}", None, "claimed")
            return

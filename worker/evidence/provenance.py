"""C2PA manifests, read and validated offline with the C2PA SDK (``c2pa-python``).

A manifest gives a ``c2pa`` signal only when its active manifest declares generative AI (an
action whose IPTC digital source type is in ``settings.evidence.ai_source_types``). Its strength
is what the signature proves:

| SDK validation | strength |
| --- | --- |
| ``Trusted``: signature and content hashes validate, chain ends at an anchor | ``verified`` |
| ``Valid``, or failing only because the issuer is not a listed anchor | ``signed`` |
| anything else (content changed after signing, a broken signature) | ``tampered`` |

Remote manifests are never fetched, and OCSP only when ``evidence.ocsp_fetch`` allows it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Final

import c2pa

from schemas.errors import AigisError
from schemas.settings_evidence import EvidenceSettings
from worker.evidence.metadata import Reading
from worker.evidence.names import generator_in

_MIME: Final[tuple[tuple[bytes, int, str], ...]] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG", 0, "image/png"),
    (b"WEBP", 8, "image/webp"),
    (b"II*\x00", 0, "image/tiff"),
    (b"MM\x00*", 0, "image/tiff"),
    (b"GIF8", 0, "image/gif"),
    (b"ftypavif", 4, "image/avif"),
    (b"ftypheic", 4, "image/heic"),
)
_UNTRUSTED: Final[str] = "signingCredential.untrusted"
_MAX_ITEMS: Final[int] = 64
"""Assertions, and actions in each, looked at (real manifests have a handful)."""


class TrustAnchorsError(AigisError):
    """The trust-anchor file named by the settings cannot be read."""


def _mime(data: bytes) -> str | None:
    return next((m for magic, at, m in _MIME if data[at : at + len(magic)] == magic), None)


def _anchors(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TrustAnchorsError(
            f"cannot read the C2PA trust anchors in {path} ({type(exc).__name__}); "
            "fix AIGIS_EVIDENCE__TRUST_ANCHORS_FILE or unset it (then no issuer is trusted)"
        ) from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise TrustAnchorsError(
            f"{path} holds no PEM certificate; list the trust anchors' root certificates in it "
            "(-----BEGIN CERTIFICATE----- blocks), or unset AIGIS_EVIDENCE__TRUST_ANCHORS_FILE"
        )
    return text


class ProvenanceReader:
    """Reads the C2PA manifest of an image; one per worker (the trust list is loaded once)."""

    def __init__(self, settings: EvidenceSettings) -> None:
        self._source_types = settings.ai_source_types
        verify = {
            "verify_trust": True,
            "remote_manifest_fetch": False,
            "ocsp_fetch": settings.ocsp_fetch,
        }
        config: dict[str, Any] = {"verify": verify}
        anchors = _anchors(settings.trust_anchors_file)
        if anchors:
            config["trust"] = {"trust_anchors": anchors}
        self._context = c2pa.Context.from_dict(config)

    def close(self) -> None:
        self._context.close()

    def read(self, data: bytes, reading: Reading) -> None:
        """Add the ``c2pa`` signal of ``data`` to ``reading``, if its manifest declares AI."""
        mime = _mime(data)
        # Every embedded manifest holds the JUMBF label "c2pa": a scan of the bytes (memchr
        # speed) spares the SDK's parse on the many images that carry none.
        if mime is None or b"c2pa" not in data:
            return
        try:
            with c2pa.Reader(mime, io.BytesIO(data), context=self._context) as reader:
                state = reader.get_validation_state()
                results = reader.get_validation_results()
                manifest = reader.get_active_manifest()
        except c2pa.C2paError.ManifestNotFound:
            return
        except c2pa.C2paError:
            reading.ignored.append("c2pa_unreadable")
            return
        if not isinstance(manifest, dict):
            reading.ignored.append("c2pa_no_active_manifest")
            return
        self._signal(manifest, _strength(state, results), reading)

    def _signal(self, manifest: dict[str, Any], strength: str, reading: Reading) -> None:
        claim_generator = _claim_generator(manifest)
        actions: list[str] = []
        declared: tuple[str, str | None] | None = None
        for action in _actions(manifest):
            actions.append(str(action.get("action", "?"))[:64])
            source = str(action.get("digitalSourceType", "")).rsplit("/", 1)[-1]
            if declared is None and source in self._source_types:
                declared = (source, _agent(action.get("softwareAgent")))
        if declared is None:
            return
        source, agent = declared
        named = agent or claim_generator
        state = {"verified": "trusted", "signed": "untrusted", "tampered": "invalid"}[strength]
        value = (
            f"{source}; claim generator {claim_generator or '?'}; "
            f"actions {', '.join(actions)}; signature {state}"
        )
        generator = (generator_in(named) or named.lower()[:64]) if named else None
        reading.add("c2pa", value, generator, strength)


def _strength(state: str | None, results: dict[str, Any] | None) -> str:
    if state == "Trusted":
        return "verified"
    if state == "Valid":
        return "signed"
    active = (results or {}).get("activeManifest") or {}
    codes = {f.get("code") for f in active.get("failure", []) if isinstance(f, dict)}
    return "signed" if codes == {_UNTRUSTED} else "tampered"


def _claim_generator(manifest: dict[str, Any]) -> str | None:
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict):
        name = info[0].get("name")
        version = info[0].get("version")
        if isinstance(name, str):
            return f"{name} {version}"[:128] if isinstance(version, str) else name[:128]
    legacy = manifest.get("claim_generator")
    return legacy[:128] if isinstance(legacy, str) else None


def _actions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    assertions = manifest.get("assertions")
    for assertion in assertions[:_MAX_ITEMS] if isinstance(assertions, list) else []:
        if not isinstance(assertion, dict):
            continue
        if not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        data = assertion.get("data")
        listed = data.get("actions") if isinstance(data, dict) else None
        if isinstance(listed, list):
            found += [a for a in listed[:_MAX_ITEMS] if isinstance(a, dict)]
    return found


def _agent(agent: object) -> str | None:
    if isinstance(agent, dict):
        agent = agent.get("name")
    return agent[:128] if isinstance(agent, str) and agent else None

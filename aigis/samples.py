"""Images that carry evidence besides their pixels, made on the spot: C2PA manifests signed with
a certificate chain built here, A1111 and ComfyUI PNGs, JPEGs whose EXIF or XMP name a
generator. The demo publishes them; the tests and the evidence benchmark read them.

The chain follows the C2PA rules for a signing credential: an ECDSA P-256 leaf that is not
self-signed, issued by an intermediate, with an authority key identifier, the email-protection
extended key usage, digital-signature key usage and an organisation; the root signs the
intermediate and is left out of the chain the manifest carries (a trust anchor lists it).
Building one needs ``cryptography`` (in the ``dev`` extra).
"""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass

import c2pa
import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image, PngImagePlugin

AI_SOURCE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Aigis Test Signing"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "GB"),
        ]
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    ca = subject != "Signer"
    usage = dict.fromkeys(
        (
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, **usage),
            critical=True,
        )
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class Credential:
    """A signing key, the chain the manifest carries (leaf, intermediate) and the root."""

    chain_pem: str
    key_pem: str
    root_pem: str


def credential() -> Credential:
    root_key, inter_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _certificate("Test Root", root_key, "Test Root", root_key)
    intermediate = _certificate("Test Intermediate", inter_key, "Test Root", root_key)
    leaf = _certificate("Signer", leaf_key, "Test Intermediate", inter_key)
    key = leaf_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Credential(_pem(leaf) + _pem(intermediate), key.decode(), _pem(root))


def photo(seed: int = 0, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A textured image (PDQ quality 100): the same for the same seed, different for each seed."""
    noise = np.random.default_rng(seed).normal(128, 40 + seed, size=(size[1], size[0]))
    image = Image.fromarray(noise.clip(0, 255).astype(np.uint8), "L").convert("RGB")
    return image.resize((size[0] // 4, size[1] // 4)).resize(size, Image.Resampling.BICUBIC)


def jpeg(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", **{"quality": 90, **options})
    return buffer.getvalue()


def png(image: Image.Image, texts: dict[str, str] | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in (texts or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def signed_jpeg(cred: Credential, image: Image.Image, agent: str = "DALL-E 3") -> bytes:
    """A JPEG whose embedded C2PA manifest declares it made by ``agent`` (generative AI)."""
    manifest = {
        "claim_generator_info": [{"name": "aigis-test-generator", "version": "1.0"}],
        "title": "generated.jpg",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": AI_SOURCE,
                            "softwareAgent": {"name": agent},
                        }
                    ]
                },
            }
        ],
    }
    info = c2pa.C2paSignerInfo(
        c2pa.C2paSigningAlg.ES256, cred.chain_pem.encode(), cred.key_pem.encode(), None
    )
    signer = c2pa.Signer.from_info(info)
    out = io.BytesIO()
    with c2pa.Builder(json.dumps(manifest)) as builder:
        builder.sign(signer, "image/jpeg", io.BytesIO(jpeg(image)), out)
    return out.getvalue()


def tampered(signed: bytes) -> bytes:
    """``signed`` with one byte of its image data changed after signing."""
    changed = bytearray(signed)
    changed[-200] ^= 0xFF
    return bytes(changed)


def corrupt_manifest(signed: bytes) -> bytes:
    """``signed`` with 400 bytes of its manifest (from the signature box on) overwritten."""
    at = signed.index(b"c2pa.signature")
    return signed[:at] + b"A" * 400 + signed[at + 400 :]


def a1111_png(image: Image.Image) -> bytes:
    parameters = (
        "a lighthouse at dusk, oil painting\nNegative prompt: blurry\n"
        "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 160x120, "
        "Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Version: v1.9.4"
    )
    return png(image, {"parameters": parameters})


def comfyui_png(image: Image.Image) -> bytes:
    prompt = {
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "sd3_medium_incl_clips.safetensors"},
        },
        "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20, "model": ["4", 0]}},
    }
    workflow = {"nodes": [{"id": 4, "type": "CheckpointLoaderSimple"}], "links": []}
    return png(image, {"prompt": json.dumps(prompt), "workflow": json.dumps(workflow)})


def exif_jpeg(image: Image.Image, software: str = "Midjourney v6") -> bytes:
    exif = Image.Exif()
    exif[0x0131] = software
    return jpeg(image, exif=exif.tobytes())


def xmp_jpeg(image: Image.Image, packet: str) -> bytes:
    return jpeg(image, xmp=packet.encode())


def xmp_packet(creator_tool: str, source_type: str = AI_SOURCE) -> str:
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
        'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        f'xmp:CreatorTool="{creator_tool}" Iptc4xmpExt:DigitalSourceType="{source_type}"/>'
        "</rdf:RDF></x:xmpmeta>"
    )

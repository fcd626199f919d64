"""The fetch policy: which URIs a process may load, decided before anything is opened.

:meth:`FetchPolicy.target` turns a URI into what may be loaded (a web URL, a local path, an s3
object) or raises ``uri_not_allowed``; it reads nothing but the URI and, for ``file``, the
directories below a root. :meth:`FetchPolicy.check_addresses` judges the addresses a web host
resolved to, so the caller can connect to exactly the address that was judged.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address
from pathlib import Path
from typing import NamedTuple
from urllib.parse import SplitResult, unquote, urlsplit

import httpx

from schemas.settings_fetch import FetchSettings
from worker.fetch.errors import not_allowed

IPAddress = IPv4Address | IPv6Address

DEFAULT_PORTS = {"http": 80, "https": 443}

# Ranges Python calls global that no image host lives in: deprecated site-local and the NAT64
# local-use prefix (the well-known NAT64 prefix is unwrapped instead).
_NOT_PUBLIC = (IPv6Network("fec0::/10"), IPv6Network("64:ff9b:1::/48"))
_NAT64 = IPv6Network("64:ff9b::/96")
_V4_COMPATIBLE = IPv6Network("::/96")


class S3Object(NamedTuple):
    bucket: str
    key: str


Target = httpx.URL | Path | S3Object


class FetchPolicy:
    """What ``settings`` admit. Every refusal is a ``FetchError`` with reason
    ``uri_not_allowed``, raised before any connection is made or any file is opened."""

    def __init__(self, settings: FetchSettings) -> None:
        self.settings = settings
        # Resolved once, so a root reached through a symlink compares with resolved paths.
        self._roots = tuple(Path(os.path.realpath(root)) for root in settings.file_roots)

    def target(self, uri: str) -> Target:
        try:
            parts = urlsplit(uri)
        except ValueError:
            raise not_allowed("not a valid URI") from None
        scheme = parts.scheme.lower()
        if scheme == "file":
            return self._file_path(parts)
        if scheme == "s3":
            return self._s3_object(parts)
        return self.web_url(uri)

    def web_url(self, uri: str | httpx.URL) -> httpx.URL:
        """``uri`` parsed the way it will be requested; also checks every redirect's target."""
        try:
            url = httpx.URL(uri)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise not_allowed("not a valid URI") from None
        if url.scheme not in self.settings.schemes:
            raise not_allowed("scheme not admitted")
        if url.userinfo:
            raise not_allowed("user credentials in the URI")
        if not url.raw_host:
            raise not_allowed("no host")
        if (url.port or DEFAULT_PORTS[url.scheme]) not in self.settings.ports:
            raise not_allowed("port not admitted")
        try:
            literal = ip_address(url.host)
        except ValueError:
            return url  # a name: judged on what it resolves to, when it is resolved
        self.check_addresses(url.host, [str(literal)])
        return url

    def check_addresses(self, host: str, addresses: Iterable[str]) -> None:
        """Refuse unless every address ``host`` resolved to is admitted: one bad address among
        good ones could be the one a retry or another client connects to."""
        named = host.lower().rstrip(".") in self.settings.private_hosts
        for text in addresses:
            if not self._admits(ip_address(text), named):
                raise not_allowed("the host's address is not public")

    def _admits(self, ip: IPAddress, named: bool) -> bool:
        inner = embedded_ipv4(ip)
        for address in (ip, inner):
            if address is not None and (
                address.is_link_local or address.is_multicast or address.is_unspecified
            ):
                return False
        effective = inner or ip
        if is_public(effective):
            return True
        return named or any(
            a in network for network in self.settings.private_networks for a in (ip, effective)
        )

    def _file_path(self, parts: SplitResult) -> Path:
        if not self._roots:
            raise not_allowed("scheme not admitted")
        if parts.netloc.lower() not in ("", "localhost"):
            raise not_allowed("a host in a file URI")
        raw = unquote(parts.path)
        if "\x00" in raw or not raw.startswith("/"):
            raise not_allowed("not an absolute path")
        # First without touching the disk, so nothing outside the roots is even looked at (an
        # automounted path can hang); then with symlinks resolved, so none leads out.
        for path in (Path(os.path.normpath(raw)), real := Path(os.path.realpath(raw))):
            if not any(path.is_relative_to(root) for root in self._roots):
                raise not_allowed("path outside the file roots")
        return real

    def _s3_object(self, parts: SplitResult) -> S3Object:
        if parts.netloc not in self.settings.s3_buckets:
            raise not_allowed("bucket not admitted")
        key = parts.path.lstrip("/")
        if not key:
            raise not_allowed("no object key")
        return S3Object(parts.netloc, key)


def is_public(ip: IPAddress) -> bool:
    """An address any image host on the internet could have."""
    return (
        ip.is_global
        and not ip.is_reserved
        and not ip.is_multicast
        and not any(ip in network for network in _NOT_PUBLIC)
    )


def embedded_ipv4(ip: IPAddress) -> IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, Teredo, NAT64, compatible): the
    address that is really reached, so ``::ffff:127.0.0.1`` counts as loopback."""
    if isinstance(ip, IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or (ip in _V4_COMPATIBLE and not ip.is_loopback and not ip.is_unspecified):
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return None

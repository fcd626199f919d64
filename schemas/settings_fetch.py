"""The fetch policy's settings group (``AIGIS_FETCH__``): which image URIs a process may load."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, IPvAnyNetwork, field_validator

from schemas.settings_env import Group

__all__ = ["FetchSettings"]


class FetchSettings(Group):
    """The fetch policy: which image URIs a process may load, and for how long it may try.

    Read by every process that loads images by URI. The defaults admit https on public addresses
    only; each field below that is not a time widens what a producer can make a process read.
    """

    schemes: frozenset[Literal["https", "http"]] = frozenset({"https"})
    """Web schemes loaded; ``http`` is off because nothing protects what it brings. ``s3`` and
    ``file`` are not listed here: ``s3_buckets`` and ``file_roots`` admit them."""
    ports: frozenset[Annotated[int, Field(ge=1, le=65535)]] = frozenset({80, 443})
    """Ports an http(s) URI (or a redirect) may name."""
    s3_buckets: frozenset[str] = frozenset()
    """Buckets whose objects ``s3://`` URIs may name, read with this process's own credentials;
    empty: no ``s3``."""
    file_roots: tuple[Path, ...] = ()
    """Absolute directories under which ``file://`` URIs may name regular files (symlinks are
    resolved first and must stay inside); empty: no ``file``. Anyone who can write below a
    root can choose what the process reads there."""
    private_networks: tuple[IPvAnyNetwork, ...] = ()
    """Non-public networks (CIDR) that http(s) hosts may resolve to, such as an internal image
    store, loopback included when listed. Link-local (169.254.0.0/16, fe80::/10), multicast and
    unspecified addresses are refused even when listed."""
    private_hosts: frozenset[str] = frozenset()
    """Host names whose non-public addresses are admitted, with the same exceptions as
    ``private_networks``."""
    timeout_s: Annotated[float, Field(gt=0)] = 10.0
    """Wall-clock limit of one try, from the moment it starts: name lookup, connect, TLS, every
    redirect and every read."""
    retries: Annotated[int, Field(ge=0)] = 2
    """Tries of an http(s) load after a timeout, an HTTP 5xx or an HTTP 429, before the event is
    dead-lettered; other failures, and file and s3 loads, are not tried again."""
    backoff_initial_s: Annotated[float, Field(gt=0)] = 0.5
    """Wait before the second try; each later wait doubles (with jitter) up to ``backoff_max_s``."""
    backoff_max_s: Annotated[float, Field(gt=0)] = 5.0
    """Longest wait between tries; a server's Retry-After is honoured up to this."""
    max_redirects: Annotated[int, Field(ge=0)] = 5
    """Redirects followed per try; each hop is checked like the URI itself."""

    @field_validator("file_roots")
    @classmethod
    def _absolute(cls, roots: tuple[Path, ...]) -> tuple[Path, ...]:
        relative = [str(r) for r in roots if not r.is_absolute()]
        if relative:
            raise ValueError(f"fetch.file_roots must be absolute paths, not {relative}")
        return roots

    @field_validator("private_hosts")
    @classmethod
    def _lower_case(cls, hosts: frozenset[str]) -> frozenset[str]:
        return frozenset(h.lower().rstrip(".") for h in hosts)

    @property
    def max_fetch_s(self) -> float:
        """The longest one load can take: every try and every wait between them."""
        return (self.retries + 1) * self.timeout_s + self.retries * self.backoff_max_s

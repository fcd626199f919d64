"""Reviewers, passwords and login sessions of the review console.

Passwords are kept as scrypt hashes (salted, ``n=2**14, r=8, p=1``), never in clear. A login
gives a random session token (the cookie) of which only the SHA-256 is stored, and a random CSRF
token that every form posts back. The reviewer named on a decision is the session's, never one
taken from the request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Engine, delete, insert, select, update

from aigis.console.db import reviewers, sessions
from schemas.errors import AigisError

Role = Literal["reviewer", "auditor"]
ROLES: tuple[Role, ...] = ("reviewer", "auditor")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_N, _R, _P = 2**14, 8, 1
LOCK_AFTER = 5
"""Wrong passwords in a row that lock a login..."""
LOCK_S = 900.0
"""...for this long (a right password meanwhile is refused too)."""
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
_DUMMY = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 88
"""Checked against when the login is unknown, so both answers take as long."""


class AuthError(AigisError):
    """A reviewer or password that cannot be used."""


@dataclass(frozen=True)
class Session:
    reviewer: str
    role: Role
    csrf: str


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=64)
    return "$".join(["scrypt", str(_N), str(_R), str(_P), _b64(salt), _b64(digest)])


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return scheme == "scrypt" and hmac.compare_digest(got, expected)


def set_reviewer(engine: Engine, name: str, password: str, role: Role) -> bool:
    """Create the reviewer or replace their password and role; True when created."""
    if not _NAME.match(name):
        raise AuthError(
            f"reviewer name {name!r} is not valid: 1-64 letters, digits and . _ @ - "
            "(starting with a letter or digit)"
        )
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AuthError(f"the password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long")
    if role not in ROLES:
        raise AuthError(f"role {role!r} is not one of {', '.join(ROLES)}")
    hashed = hash_password(password)
    with engine.begin() as conn:
        changed = conn.execute(
            update(reviewers)
            .where(reviewers.c.name == name)
            .values(
                password_hash=hashed, role=role, disabled=False, failed_logins=0, locked_until=None
            )
        ).rowcount
        if changed:
            conn.execute(delete(sessions).where(sessions.c.reviewer == name))
            return False
        conn.execute(
            insert(reviewers).values(
                name=name,
                role=role,
                password_hash=hashed,
                created_at=time.time(),
                disabled=False,
                failed_logins=0,
            )
        )
    return True


def disable_reviewer(engine: Engine, name: str) -> bool:
    with engine.begin() as conn:
        conn.execute(delete(sessions).where(sessions.c.reviewer == name))
        return bool(
            conn.execute(
                update(reviewers).where(reviewers.c.name == name).values(disabled=True)
            ).rowcount
        )


def list_reviewers(engine: Engine) -> list[tuple[str, str, bool]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(reviewers.c.name, reviewers.c.role, reviewers.c.disabled).order_by(
                reviewers.c.name
            )
        )
        return [(r.name, r.role, bool(r.disabled)) for r in rows]


def login(engine: Engine, name: str, password: str, hours: float) -> str | None:
    """A new session token for a good name and password, else None. ``LOCK_AFTER`` wrong
    passwords in a row lock the login for ``LOCK_S``."""
    if len(name) > 64 or len(password) > MAX_PASSWORD:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(reviewers).where(reviewers.c.name == name)).first()
    good = check_password(password, row.password_hash if row else _DUMMY)
    now = time.time()
    if row is None or row.disabled or (row.locked_until or 0.0) > now:
        return None
    if not good:
        failed = row.failed_logins + 1
        with engine.begin() as conn:
            conn.execute(
                update(reviewers)
                .where(reviewers.c.name == name)
                .values(
                    failed_logins=0 if failed >= LOCK_AFTER else failed,
                    locked_until=now + LOCK_S if failed >= LOCK_AFTER else row.locked_until,
                )
            )
        return None
    token = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(update(reviewers).where(reviewers.c.name == name).values(failed_logins=0))
        conn.execute(delete(sessions).where(sessions.c.expires_at < time.time()))
        conn.execute(
            insert(sessions).values(
                token_sha256=_token_hash(token),
                reviewer=name,
                csrf=secrets.token_urlsafe(32),
                expires_at=time.time() + hours * 3600,
            )
        )
    return token


def session_of(engine: Engine, token: str | None) -> Session | None:
    """The live session of ``token`` whose reviewer is still enabled, else None."""
    if not token or len(token) > 128:
        return None
    with engine.connect() as conn:
        row = conn.execute(
            select(sessions.c.reviewer, sessions.c.csrf, reviewers.c.role)
            .join(reviewers, reviewers.c.name == sessions.c.reviewer)
            .where(
                sessions.c.token_sha256 == _token_hash(token),
                sessions.c.expires_at >= time.time(),
                reviewers.c.disabled.is_(False),
            )
        ).first()
    if row is None or row.role not in ROLES:
        return None
    return Session(row.reviewer, row.role, row.csrf)


def logout(engine: Engine, token: str | None) -> None:
    if token and len(token) <= 128:
        with engine.begin() as conn:
            conn.execute(delete(sessions).where(sessions.c.token_sha256 == _token_hash(token)))


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()

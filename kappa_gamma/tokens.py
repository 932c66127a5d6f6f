"""Access tokens of the registry server: ``read`` < ``write`` < ``admin``, stored hashed.

A token reads ``kgt_<id>_<secret>``; the database keeps the id, the scope and the SHA-256
of the secret (a random 256-bit secret needs no slow hash), so a copy of the database
grants nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa

from kappa.errors import AccessDenied, InputError
from kappa.repository.database import Database

SCOPES = ("read", "write", "admin")
CHECK_SECONDS = 5.0
PREFIX = "kgt_"

_meta = sa.MetaData()
tokens = sa.Table(
    "kappa_tokens",
    _meta,
    sa.Column("token_id", sa.String(32), primary_key=True),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("name", sa.String(128), nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
)


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    scope: str
    name: str
    created_at: float
    revoked: bool = False


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise InputError(f"unknown token scope {scope!r}; use one of {', '.join(SCOPES)}")
    return scope


def allows(granted: str, needed: str) -> bool:
    return SCOPES.index(granted) >= SCOPES.index(needed)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStore:
    """The tokens in the database ``db_url``; every call rides out a server restart of up to
    ``reconnect_seconds`` (see :class:`Database`)."""

    def __init__(self, db_url: str, reconnect_seconds: float = 0.0) -> None:
        self.database = Database(db_url, _meta, reconnect_seconds)
        self._checked: dict[str, tuple[TokenInfo, float]] = {}  # token -> (what it grants, until)

    def create(self, scope: str, name: str = "") -> tuple[str, TokenInfo]:
        """A new token (shown once: only its hash is kept) and what it grants."""
        info = TokenInfo(secrets.token_hex(8), check_scope(scope), name[:128], time.time())
        secret = secrets.token_urlsafe(32)
        row = tokens.insert().values(
            token_id=info.token_id,
            secret_sha256=_hash(secret),
            scope=info.scope,
            name=info.name,
            created_at=info.created_at,
        )
        self.database.call(lambda conn: conn.execute(row), write=True)
        return f"{PREFIX}{info.token_id}_{secret}", info

    def check(self, token: str) -> TokenInfo:
        """What ``token`` grants; AccessDenied when it is malformed, unknown or revoked. A granted
        token is remembered for CHECK_SECONDS (a revocation takes that long to reach a server
        that has just seen the token), so most requests touch no database."""
        info = self.remembered(token)
        if info is not None:
            return info  # not remembered for longer: a revocation still reaches this server in time
        info = self._lookup(token)
        if len(self._checked) > 10_000:
            self._checked.clear()
        self._checked[token] = (info, time.monotonic() + CHECK_SECONDS)
        return info

    def remembered(self, token: str) -> TokenInfo | None:
        """What ``token`` grants, if it was granted in the last CHECK_SECONDS (no database)."""
        cached = self._checked.get(token)
        return cached[0] if cached is not None and cached[1] > time.monotonic() else None

    def _lookup(self, token: str) -> TokenInfo:
        token_id, _, secret = token.removeprefix(PREFIX).partition("_")
        if not token.startswith(PREFIX) or not token_id or not secret:
            raise AccessDenied("malformed token; tokens read kgt_<id>_<secret>")
        query = sa.select(tokens).where(tokens.c.token_id == token_id)
        row = self.database.call(lambda conn: conn.execute(query).first())
        if row is None or not hmac.compare_digest(row.secret_sha256, _hash(secret)):
            raise AccessDenied("unknown token")
        if row.revoked_at is not None:
            raise AccessDenied(f"token {token_id} was revoked")
        return TokenInfo(row.token_id, row.scope, row.name, row.created_at)

    def list(self) -> list[TokenInfo]:
        query = sa.select(tokens).order_by(tokens.c.created_at)
        rows = self.database.call(lambda conn: conn.execute(query).all())
        return [TokenInfo(r.token_id, r.scope, r.name, r.created_at, r.revoked_at is not None) for r in rows]

    def revoke(self, token_id: str) -> bool:
        update = (
            tokens.update()
            .where(tokens.c.token_id == token_id, tokens.c.revoked_at.is_(None))
            .values(revoked_at=time.time())
        )
        return bool(self.database.call(lambda conn: conn.execute(update).rowcount, write=True))

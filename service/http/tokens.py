"""API tokens: created by an admin, stored only as a hash, each with one role.

Tokens are 32 random bytes, so a plain SHA-256 is enough to make a stolen
table useless (no dictionary to try). The bootstrap admin token from
MENTORFLOW_ADMIN_TOKEN is never stored at all: it is compared by hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Literal, cast
from uuid import uuid4

import asyncpg

from service.store.eventstore import EventStore

Role = Literal["writer", "auditor", "admin"]
ROLES: tuple[Role, ...] = ("writer", "auditor", "admin")
BOOTSTRAP_NAME = "bootstrap-admin"
TOKEN_PREFIX = "mf_"
CACHE_SECONDS = 10.0

_INSERT = "INSERT INTO api_tokens (id, name, role, token_hash) VALUES ($1, $2, $3, $4)"
_LOOKUP = "SELECT name, role FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name (recorded as the event's `source`) and role."""

    name: str
    role: Role


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class TokenRegistry:
    """Looks tokens up by hash, with a short cache so a request does not pay a
    round trip for it (a revoked token stops working within CACHE_SECONDS)."""

    def __init__(self, store: EventStore, bootstrap_admin_token: str | None = None):
        self._store = store
        self._bootstrap = hash_token(bootstrap_admin_token) if bootstrap_admin_token else None
        self._cache: dict[bytes, tuple[float, Principal | None]] = {}

    async def create(self, role: Role, name: str | None = None) -> tuple[str, Principal]:
        """A new token (returned once, in clear) and who it stands for."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        token = new_token()
        principal = Principal(name or f"{role}-{uuid4().hex[:8]}", role)
        try:
            await self._store.with_connection(
                lambda conn: conn.execute(
                    _INSERT, uuid4(), principal.name, principal.role, hash_token(token)
                )
            )
        except asyncpg.UniqueViolationError:
            raise ValueError(f"a token named {principal.name!r} already exists") from None
        return token, principal

    async def authenticate(self, token: str) -> Principal | None:
        digest = hash_token(token)
        if self._bootstrap is not None and hmac.compare_digest(digest, self._bootstrap):
            return Principal(BOOTSTRAP_NAME, "admin")
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        row = await self._store.with_connection(lambda conn: conn.fetchrow(_LOOKUP, digest))
        principal = None if row is None else Principal(row["name"], cast(Role, row["role"]))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + CACHE_SECONDS, principal)
        return principal

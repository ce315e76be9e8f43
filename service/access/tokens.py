"""API tokens: created by an admin, stored only as a hash, each with an id,
a unique name, one role, and optionally the programs it is limited to.

Tokens are 32 random bytes, so a plain SHA-256 is enough to make a stolen
table useless (no dictionary to try). The bootstrap admin token from
MENTORFLOW_ADMIN_TOKEN is never stored at all: it is compared by hash, its
name `bootstrap-admin` is reserved, and its id is derived from its hash (so
a new bootstrap token does not inherit the old one's idempotency keys).

Identity is the id: idempotency keys are scoped to it. The name is what a
recorded event's `source` says; names are unique and never reused (revoking
keeps the row).

Revocation reaches every process within a second: a lookup is cached for
CACHE_SECONDS only (and the revoking process evicts at once). `last_used_at`
is written at most once per LAST_USED_EVERY per token, never per request.

A busy token never waits for its lookup. Once an entry has lived
REFRESH_AFTER_SECONDS, the next request starts a new lookup in the
background and is answered from the entry; and the requests that find no
entry share one lookup. Before, each expiry sent every request in flight with
that token to the database at once: under load, 16 lookups every half second,
and the requests that waited for them were the slowest of all.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast
from uuid import UUID, uuid4, uuid5

import asyncpg

from service.store.eventstore import EventStore

log = logging.getLogger("mentorflow.tokens")

Role = Literal["writer", "auditor", "admin"]
ROLES: tuple[Role, ...] = ("writer", "auditor", "admin")
BOOTSTRAP_NAME = "bootstrap-admin"
BOOTSTRAP_NAMESPACE = UUID("6d0f3c52-3a1e-4c1b-9d8e-0b6a4f5e2c71")
TOKEN_PREFIX = "mf_"
CACHE_SECONDS = 0.5
REFRESH_AFTER_SECONDS = 0.25
"""An entry this old is looked up again in the background on its next use."""
LAST_USED_EVERY_S = 60
NAME_RULE = re.compile(r"[a-z0-9._-]{1,64}")
MAX_PROGRAMS = 100
MAX_PROGRAM_ID = 200

_COLUMNS = "id, name, role, program_ids, created_at, last_used_at, revoked_at"
# S608: the queries are built from constants only
_INSERT = (
    "INSERT INTO api_tokens (id, name, role, token_hash, program_ids)"  # noqa: S608
    f" VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}"
)
_LOOKUP = (
    "SELECT id, name, role, program_ids, (last_used_at IS NULL OR last_used_at"  # noqa: S608
    f" < now() - interval '{LAST_USED_EVERY_S} seconds') AS stale"
    " FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL"
)
_TOUCH = "UPDATE api_tokens SET last_used_at = now() WHERE id = $1"
_LIST = f"SELECT seq, {_COLUMNS} FROM api_tokens WHERE seq > $1 ORDER BY seq LIMIT $2"  # noqa: S608
_REVOKE = (
    "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING id"
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id (its identity: idempotency keys are
    scoped to it), name (recorded as the event's `source`), role, and the
    programs it is limited to (None: every program)."""

    id: UUID
    name: str
    role: Role
    program_ids: frozenset[str] | None = None

    @property
    def limited(self) -> bool:
        return self.program_ids is not None

    def sees(self, program_id: str | None) -> bool:
        """Whether a relationship of `program_id` (None: of no program) is visible."""
        return self.program_ids is None or (
            program_id is not None and program_id in self.program_ids
        )


@dataclass(frozen=True)
class TokenInfo:
    """A stored token as `GET /v1/tokens` shows it (never the token or its hash)."""

    id: UUID
    name: str
    role: Role
    program_ids: tuple[str, ...] | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> TokenInfo:
        programs = row["program_ids"]
        return cls(
            UUID(bytes=row["id"].bytes),
            row["name"],
            cast(Role, row["role"]),
            None if programs is None else tuple(programs),
            row["created_at"],
            row["last_used_at"],
            row["revoked_at"],
        )

    def to_dict(self) -> dict[str, Any]:
        def when(moment: datetime | None) -> str | None:
            return None if moment is None else moment.isoformat()

        return {
            "id": str(self.id),
            "name": self.name,
            "role": self.role,
            "program_ids": None if self.program_ids is None else list(self.program_ids),
            "created_at": when(self.created_at),
            "last_used_at": when(self.last_used_at),
            "revoked_at": when(self.revoked_at),
        }


class TokenRefused(ValueError):
    """A token request breaks a rule; `errors` are (path, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{path}: {message}" for path, message in errors))


def name_problem(name: object) -> str | None:
    """Why `name` cannot name a new token, or None if it can."""
    if not isinstance(name, str) or not NAME_RULE.fullmatch(name):
        return "must be 1 to 64 characters of a-z, 0-9, '.', '_' and '-'"
    if name == BOOTSTRAP_NAME:
        return f"{BOOTSTRAP_NAME!r} is reserved for the bootstrap token"
    return None


def check_token_request(role: object, name: object, program_ids: object) -> list[tuple[str, str]]:
    """Every rule a new token's fields break, as (path, message) pairs."""
    errors: list[tuple[str, str]] = []
    if role not in ROLES:
        errors.append(("role", f"must be one of {', '.join(ROLES)}"))
    problem = name_problem(name)
    if problem is not None:
        errors.append(("name", problem))
    if program_ids is not None:
        if (
            not isinstance(program_ids, list)
            or not 0 < len(program_ids) <= MAX_PROGRAMS
            or not all(
                isinstance(p, str) and 0 < len(p) <= MAX_PROGRAM_ID and p.isprintable()
                for p in program_ids
            )
        ):
            errors.append(
                (
                    "program_ids",
                    f"must be a list of 1 to {MAX_PROGRAMS} program ids"
                    f" (strings of 1 to {MAX_PROGRAM_ID} characters)",
                )
            )
        elif role == "admin":
            errors.append(
                ("program_ids", "an admin token sees every program; limit a writer or an auditor")
            )
    return errors


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _retrieve_error(lookup: asyncio.Future[Principal | None]) -> None:
    """A background lookup that failed (the database is away) is only logged:
    the entry still answers until it expires, then requests look up themselves."""
    if not lookup.cancelled() and lookup.exception() is not None:
        log.warning("token lookup failed: %s", lookup.exception())


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class TokenRegistry:
    """Creates, lists and revokes tokens; looks them up by hash with a cache
    short enough that a revoked token stops working everywhere within a second."""

    def __init__(self, store: EventStore, bootstrap_admin_token: str | None = None):
        self._store = store
        self._bootstrap: Principal | None = None
        self._bootstrap_hash: bytes | None = None
        if bootstrap_admin_token:
            digest = hash_token(bootstrap_admin_token)
            self._bootstrap_hash = digest
            self._bootstrap = Principal(
                uuid5(BOOTSTRAP_NAMESPACE, digest.hex()), BOOTSTRAP_NAME, "admin"
            )
        self._cache: dict[bytes, tuple[float, Principal | None]] = {}
        """Hash -> (monotonic time the entry expires, whom it names or None)."""
        self._lookups: dict[bytes, asyncio.Future[Principal | None]] = {}
        """The lookup in flight for each hash: concurrent misses share it."""
        self._revocations = 0
        """Counts revocations: a lookup that saw one start meanwhile is not kept."""
        self.clock: Callable[[], float] = time.monotonic

    async def create(
        self, role: Role, name: str, program_ids: Sequence[str] | None = None
    ) -> tuple[str, TokenInfo]:
        """A new token (returned once, in clear) and what is stored about it.
        Raises TokenRefused."""
        programs = None if program_ids is None else list(program_ids)
        errors = check_token_request(role, name, programs)
        if errors:
            raise TokenRefused(errors)
        token = new_token()
        programs = None if programs is None else sorted(set(programs))
        try:
            row = await self._store.with_connection(
                lambda conn: conn.fetchrow(
                    _INSERT, uuid4(), name, role, hash_token(token), programs
                )
            )
        except asyncpg.UniqueViolationError:
            raise TokenRefused(
                [("name", f"a token named {name!r} already exists (names are never reused)")]
            ) from None
        return token, TokenInfo.from_row(row)

    async def list(self, *, after: int = 0, limit: int = 50) -> tuple[list[TokenInfo], int | None]:
        """A page of tokens in creation order, and the key to continue after
        (None on the last page)."""
        rows = await self._store.with_connection(lambda conn: conn.fetch(_LIST, after, limit + 1))
        items = [TokenInfo.from_row(r) for r in rows[:limit]]
        return items, (rows[limit - 1]["seq"] if len(rows) > limit else None)

    async def revoke(self, token_id: UUID) -> bool:
        """Revoke the token (idempotent); False if there is no such token."""
        found = await self._store.with_connection(lambda conn: conn.fetchval(_REVOKE, token_id))
        self._revocations += 1
        for digest, (_, who) in list(self._cache.items()):
            if who is not None and who.id == token_id:
                self._cache.pop(digest, None)
        return found is not None

    async def authenticate(self, token: str) -> Principal | None:
        digest = hash_token(token)
        if self._bootstrap_hash is not None and hmac.compare_digest(digest, self._bootstrap_hash):
            return self._bootstrap
        cached = self._cache.get(digest)
        if cached is not None:
            expires, principal = cached
            left = expires - self.clock()
            if left > 0:
                if left < CACHE_SECONDS - REFRESH_AFTER_SECONDS and digest not in self._lookups:
                    self._lookup(digest).add_done_callback(_retrieve_error)
                return principal
        return await asyncio.shield(self._lookup(digest))

    def _lookup(self, digest: bytes) -> asyncio.Future[Principal | None]:
        """The lookup of `digest` in flight, started if there is none. Callers
        await it shielded: one request that goes away does not cancel it for
        the others."""
        pending = self._lookups.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(digest))
            self._lookups[digest] = pending

            def done(lookup: asyncio.Future[Principal | None]) -> None:
                self._lookups.pop(digest, None)
                if not lookup.cancelled():
                    lookup.exception()  # its callers have it, or none is left to have it

            pending.add_done_callback(done)
        return pending

    async def _fetch(self, digest: bytes) -> Principal | None:
        started, revocations = self.clock(), self._revocations
        row = await self._store.with_connection(lambda conn: conn.fetchrow(_LOOKUP, digest))
        principal = None
        if row is not None:
            programs = row["program_ids"]
            principal = Principal(
                UUID(bytes=row["id"].bytes),
                row["name"],
                cast(Role, row["role"]),
                None if programs is None else frozenset(programs),
            )
            if row["stale"]:
                await self._store.with_connection(lambda conn: conn.execute(_TOUCH, row["id"]))
        if revocations == self._revocations:  # else it may name a token revoked meanwhile
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (started + CACHE_SECONDS, principal)
        return principal

"""Idempotency-Key on every authenticated POST: the same key and body get the
first response back (a middleware, so no route can forget it).

The response is kept per token id (two clients may pick the same key, and a
token created later, whatever its name, never sees another's keys), for
KEEP_HOURS, and its body is sealed with AES-GCM under MENTORFLOW_CIPHER_KEY
when one is set (it may hold confidential fields). An expired response is
never replayed: the lookup ignores and deletes it, and every process deletes
expired rows at most once per CLEANUP_EVERY_S, on insert.

Appends made under a key also carry it into the event store
(:func:`idempotency_scope`), so two copies of one request racing each other
still record the events once. A response member that is a credential (a new
token, a webhook secret: ``Route.secrets``) is kept only sealed; without a
cipher key its replay carries null there, since no secret is ever stored in
clear.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from aiohttp import web

from domain import DomainError
from service.access.tokens import Principal
from service.http.context import principal
from service.http.json_text import dumps
from service.http.problems import Problem, problem_from_domain
from service.http.routing import Handler, route_of
from service.relationships.application import IdempotencyKey
from service.store.eventstore import EventStore
from service.webhooks.sealing import SecretSealer, SecretUnavailable

log = logging.getLogger(__name__)

MAX_KEY_LENGTH = 255
KEEP_HOURS = 24
CLEANUP_EVERY_S = 60.0
CLEANUP_BATCH = 10_000

_FRESH = f"created_at > now() - interval '{KEEP_HOURS} hours'"
# S608: the queries are built from constants only
_LOOKUP = (  # one round trip: an expired row is deleted as the fresh one is looked for
    "WITH expired AS (DELETE FROM idempotent_responses"  # noqa: S608
    f" WHERE token_id = $1 AND key = $2 AND NOT {_FRESH})"
    " SELECT fingerprint, status, body, headers FROM idempotent_responses"
    f" WHERE token_id = $1 AND key = $2 AND {_FRESH}"
)
_DELETE_ONE = "DELETE FROM idempotent_responses WHERE token_id = $1 AND key = $2"
_SAVE = (
    # never for an erased relationship: its data key's row is locked first, so
    # an erasure (which deletes the responses about it, migration 0070) either
    # waits for this insert and then deletes it, or has committed and is seen
    "WITH data_key AS MATERIALIZED (SELECT erased_at FROM data_keys WHERE stream_id = $7"
    " FOR SHARE)"
    " INSERT INTO idempotent_responses"
    " (token_id, key, fingerprint, status, body, headers, relationship_id)"
    " SELECT $1, $2, $3, $4, $5, $6, $7"
    " WHERE NOT EXISTS (SELECT 1 FROM data_key WHERE erased_at IS NOT NULL)"
    " ON CONFLICT (token_id, key) DO NOTHING RETURNING true"
)
_CLEANUP = (
    "DELETE FROM idempotent_responses WHERE ctid = ANY(ARRAY("  # noqa: S608
    f"SELECT ctid FROM idempotent_responses WHERE NOT {_FRESH} LIMIT {CLEANUP_BATCH}))"
)
REPLAYED_HEADERS = ("ETag", "Location")


class ResponseKeeper:
    """The stored responses: sealed on the way in, opened on the way out."""

    def __init__(self, store: EventStore, cipher_key: str | None) -> None:
        self.store = store
        self.sealer = SecretSealer(cipher_key, what="a stored idempotent response")
        self.keeps_secrets = cipher_key is not None
        self._next_cleanup = 0.0

    async def lookup(self, who: Principal, key: str) -> Any:
        """The fresh stored response for (token, key), opened; None if there
        is none (an expired one is deleted, one this process cannot open is
        dropped: the store's own key still keeps the append from repeating)."""

        row = await self.store.with_connection(lambda conn: conn.fetchrow(_LOOKUP, who.id, key))
        if row is None:
            return None
        try:
            body = json.loads(self.sealer.open(row["body"]))
        except SecretUnavailable as exc:
            log.warning("stored idempotent response dropped: %s", exc)
            await self.store.with_connection(lambda conn: conn.execute(_DELETE_ONE, who.id, key))
            return None
        return {**dict(row), "body": body}

    async def save(
        self,
        who: Principal,
        key: str,
        scope: IdempotencyKey,
        status: int,
        body: object,
        headers: dict[str, str],
        relationship_id: UUID | None = None,
    ) -> Any:
        """Keep this response for the key; if a copy of the request running
        elsewhere kept its response first, return that one: first one wins.
        ``relationship_id`` names the relationship it is about: erasing that
        relationship deletes it, and nothing is kept once it is erased (a
        repeat then runs again and answers from the event store)."""
        sealed = self.sealer.seal(dumps(body))
        await self._cleanup()
        for _ in range(2):  # again if the row in the way had expired (the lookup dropped it)
            inserted = await self.store.with_connection(
                lambda conn: conn.fetchval(
                    _SAVE, who.id, key, scope.fingerprint, status, sealed, headers, relationship_id
                )
            )
            if inserted:
                return None
            first = await self.lookup(who, key)
            if first is not None:
                return first
        return None

    async def _cleanup(self) -> None:
        now = time.monotonic()
        if now < self._next_cleanup:
            return
        self._next_cleanup = now + CLEANUP_EVERY_S
        await self.store.with_connection(lambda conn: conn.execute(_CLEANUP))


def fingerprint(request: web.Request, body: bytes) -> bytes:
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


RESPONSES = web.AppKey("responses", ResponseKeeper)
"""The application's kept responses (sealed, expiring)."""
_SCOPE = "idempotency_scope"


def idempotency_scope(request: web.Request) -> IdempotencyKey | None:
    """The request's Idempotency-Key, scoped to its token, for handlers whose
    appends carry it into the event store; None without a key."""
    scope = request.get(_SCOPE)
    return scope if isinstance(scope, IdempotencyKey) else None


@web.middleware
async def idempotent_posts(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every authenticated POST (``Route.idempotent``) runs once per key."""
    route = route_of(request)
    if route is None or not route.idempotent:
        return await handler(request)

    async def run(scope: IdempotencyKey | None) -> web.StreamResponse:
        request[_SCOPE] = scope
        return await handler(request)

    if "Idempotency-Key" not in request.headers:
        return await run(None)
    body = await request.read()
    return await idempotent(request, principal(request), body, run, secrets=route.secrets)


async def idempotent(
    request: web.Request,
    who: Principal,
    body: bytes,
    handler: Callable[[IdempotencyKey | None], Awaitable[web.StreamResponse]],
    *,
    secrets: tuple[str, ...] = (),
) -> web.StreamResponse:
    """Run `handler` once per (token id, key); replay its response afterwards."""
    keeper = request.app[RESPONSES]
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return await handler(None)
    if not 0 < len(key) <= MAX_KEY_LENGTH:
        raise Problem(
            "malformed-request", f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters"
        )
    scope = IdempotencyKey(f"token:{who.id}\x1f{key}", fingerprint(request, body))
    row = await keeper.lookup(who, key)
    if row is not None:
        return _replay(row, scope, key)
    try:
        response = await handler(scope)
    except (Problem, DomainError) as exc:
        problem = exc if isinstance(exc, Problem) else problem_from_domain(exc)
        if problem.status >= 500:
            raise  # the same request may well succeed later
        first = await keeper.save(
            who, key, scope, problem.status, problem.body(), {}, _about(request, None)
        )
        if first is None:
            raise problem from None
        return _replay(first, scope, key)
    kept = _json(response)
    if secrets and isinstance(kept, dict) and not keeper.keeps_secrets:
        kept = {name: None if name in secrets else value for name, value in kept.items()}
    first = await keeper.save(
        who, key, scope, response.status, kept, _kept(response), _about(request, kept)
    )
    return response if first is None else _replay(first, scope, key)


def _about(request: web.Request, body: object) -> UUID | None:
    """The relationship a response is about: the one in the path, or the one
    a POST /v1/relationships opened."""
    path = request.path.rstrip("/")
    raw: object = None
    if path.startswith("/v1/relationships/"):
        raw = request.match_info.get("id")
    elif path == "/v1/relationships" and isinstance(body, dict):
        raw = body.get("id")
    try:
        return UUID(str(raw)) if raw is not None else None
    except ValueError:
        return None


def _replay(row: Any, scope: IdempotencyKey, key: str) -> web.Response:
    if row["fingerprint"] != scope.fingerprint:
        raise Problem(
            "idempotency-conflict",
            f"Idempotency-Key {key!r} was already used with a different request body",
        )
    status = int(row["status"])
    body = row["body"]
    headers = dict(row["headers"]) if isinstance(row["headers"], dict) else {}
    headers["Idempotent-Replayed"] = "true"
    if body is None:
        return web.Response(status=status, headers=headers)
    content_type = "application/problem+json" if status >= 400 else "application/json"
    return web.Response(status=status, text=dumps(body), content_type=content_type, headers=headers)


def _json(response: web.StreamResponse) -> object:
    """The response's JSON body; None for one without a body (204)."""
    text = response.text if isinstance(response, web.Response) else None
    return json.loads(text) if text else None


def _kept(response: web.StreamResponse) -> dict[str, str]:
    return {name: response.headers[name] for name in REPLAYED_HEADERS if name in response.headers}

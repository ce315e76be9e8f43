"""Idempotency-Key on POSTs: the same key and body get the first response back.

The response is kept per token (two clients may pick the same key). Appends
made under a key also carry it into the event store, so two copies of one
request racing each other still record the events once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from domain import DomainError
from service.http.problems import Problem, problem_from_domain
from service.store.eventstore import EventStore

MAX_KEY_LENGTH = 255

_LOOKUP = (
    "SELECT fingerprint, status, body, headers FROM idempotent_responses"
    " WHERE principal = $1 AND key = $2"
)
_SAVE = (
    "INSERT INTO idempotent_responses (principal, key, fingerprint, status, body, headers)"
    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (principal, key) DO NOTHING RETURNING true"
)
REPLAYED_HEADERS = ("ETag", "Location")


@dataclass(frozen=True)
class IdempotencyScope:
    """What a handler needs to make its append idempotent in the store."""

    store_key: str
    fingerprint: bytes


def fingerprint(request: web.Request, body: bytes) -> bytes:
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


async def idempotent(
    request: web.Request,
    store: EventStore,
    principal: str,
    body: bytes,
    handler: Callable[[IdempotencyScope | None], Awaitable[web.Response]],
) -> web.Response:
    """Run `handler` once per (token, key); replay its response afterwards."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return await handler(None)
    if not 0 < len(key) <= MAX_KEY_LENGTH:
        raise Problem(
            "malformed-request", f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters"
        )
    scope = IdempotencyScope(f"{principal}\x1f{key}", fingerprint(request, body))
    row = await store.with_connection(lambda conn: conn.fetchrow(_LOOKUP, principal, key))
    if row is not None:
        return _replay(row, scope, key)
    try:
        response = await handler(scope)
    except (Problem, DomainError) as exc:
        problem = exc if isinstance(exc, Problem) else problem_from_domain(exc)
        if problem.status >= 500:
            raise  # the same request may well succeed later
        first = await _save(store, principal, key, scope, problem.status, problem.body(), {})
        if first is None:
            raise problem from None
        return _replay(first, scope, key)
    first = await _save(
        store, principal, key, scope, response.status, _json(response), _kept(response)
    )
    return response if first is None else _replay(first, scope, key)


def _replay(row: Any, scope: IdempotencyScope, key: str) -> web.Response:
    if row["fingerprint"] != scope.fingerprint:
        raise Problem(
            "idempotency-conflict",
            f"Idempotency-Key {key!r} was already used with a different request body",
        )
    status = int(row["status"])
    body = row["body"]
    headers = dict(row["headers"]) if isinstance(row["headers"], dict) else {}
    headers["Idempotent-Replayed"] = "true"
    content_type = "application/problem+json" if status >= 400 else "application/json"
    return web.Response(
        status=status, text=json.dumps(body), content_type=content_type, headers=headers
    )


async def _save(
    store: EventStore,
    principal: str,
    key: str,
    scope: IdempotencyScope,
    status: int,
    body: object,
    headers: dict[str, str],
) -> Any:
    """Keep this response for the key; if a copy of the request running
    elsewhere kept its response first, return that one: first one wins."""

    async def save(conn: Any) -> Any:
        inserted = await conn.fetchval(
            _SAVE, principal, key, scope.fingerprint, status, body, headers
        )
        return None if inserted else await conn.fetchrow(_LOOKUP, principal, key)

    return await store.with_connection(save)


def _json(response: web.Response) -> object:
    assert response.text is not None
    return json.loads(response.text)


def _kept(response: web.Response) -> dict[str, str]:
    return {name: response.headers[name] for name in REPLAYED_HEADERS if name in response.headers}

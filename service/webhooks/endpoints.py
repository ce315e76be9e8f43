"""Webhook endpoints and their delivery log: the one place their SQL lives."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from service.store.eventstore import EventStore
from service.webhooks.outbox import (
    CHANNEL_PREFIX,
    CHECKPOINT_TYPE,
    TEST_TYPE,
    test_cloudevent,
    wire_id,
)
from service.webhooks.sealing import SecretSealer, SecretUnavailable
from service.webhooks.signing import new_secret

log = logging.getLogger(__name__)

ROTATION_OVERLAP = timedelta(hours=24)

_CREATE = (
    "INSERT INTO webhook_endpoints (id, url, event_types, description, secret, created_position)"
    " VALUES ($1, $2, $3, $4, $5, (SELECT last_position FROM event_position))"
    " RETURNING id, url, event_types, description, enabled, disabled_reason,"
    " previous_expires_at, failing_since, created_at, updated_at"
)
_LIST = (
    "SELECT id, url, event_types, description, enabled, disabled_reason, previous_expires_at,"
    " failing_since, created_at, updated_at FROM webhook_endpoints"
    " WHERE deleted_at IS NULL AND ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2"
)
_GET = (
    "SELECT id, url, event_types, description, enabled, disabled_reason, previous_expires_at,"
    " failing_since, created_at, updated_at FROM webhook_endpoints"
    " WHERE id = $1 AND deleted_at IS NULL"
)
_UPDATE = (
    "UPDATE webhook_endpoints SET url = coalesce($2, url),"
    " event_types = coalesce($3, event_types), description = coalesce($4, description),"
    " enabled = coalesce($5, enabled),"
    " disabled_reason = CASE WHEN $5 THEN NULL ELSE disabled_reason END,"
    " failing_since = CASE WHEN $5 THEN NULL ELSE failing_since END,"
    " updated_at = now() WHERE id = $1 AND deleted_at IS NULL"
    " RETURNING id, url, event_types, description, enabled, disabled_reason,"
    " previous_expires_at, failing_since, created_at, updated_at"
)
_DELETE = (
    "UPDATE webhook_endpoints SET deleted_at = now(), enabled = false"
    " WHERE id = $1 AND deleted_at IS NULL RETURNING id"
)
_ROTATE = (
    "UPDATE webhook_endpoints SET previous_secret = secret, secret = $2,"
    " previous_expires_at = now() + make_interval(secs => $3), updated_at = now()"
    " WHERE id = $1 AND deleted_at IS NULL RETURNING previous_expires_at"
)
_TARGETS = (
    "SELECT id, url, secret, previous_secret, previous_expires_at FROM webhook_endpoints"
    " WHERE id = ANY($1::uuid[])"
)
_HEALTHY = (
    "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL"
)
_FAILING = (
    "UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, now())"
    " WHERE id = $1 RETURNING failing_since"
)
_DISABLE = (
    "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, updated_at = now()"
    " WHERE id = $1"
)
_ATTEMPTS = (
    "SELECT a.id, a.message_id, a.attempt, a.attempted_at, a.status, a.latency_ms, a.error,"
    " a.next_retry_at, m.webhook_type, m.position, m.relationship_id, m.state"
    " FROM webhook_attempts a JOIN webhook_messages m ON m.id = a.message_id"
    " WHERE a.endpoint_id = $1 AND ($2::bigint IS NULL OR a.id < $2)"
    " ORDER BY a.id DESC LIMIT $3"
)
_RETRY_ONE = (
    "UPDATE webhook_messages SET state = 'pending', next_attempt_at = now(), lease_until = NULL"
    " WHERE id = $1 AND endpoint_id = $2 RETURNING id"
)
_RECOVER = (
    "UPDATE webhook_messages SET state = 'pending', next_attempt_at = now(), lease_until = NULL"
    " WHERE endpoint_id = $1 AND state = 'failed' AND failed_at >= $2"
)
_LOCK_ENDPOINT = "SELECT id FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL FOR UPDATE"
_INSERT_TEST = (
    "INSERT INTO webhook_messages (id, endpoint_id, position, relationship_id, webhook_type, body)"
    " SELECT $1, $2, least(coalesce(min(position), 0), 0) - 1, $1, $3, $4::jsonb"
    " FROM webhook_messages WHERE endpoint_id = $2 AND position < 0"
)
_WAKE = "SELECT pg_notify($1 || current_schema(), '')"


@dataclass(frozen=True)
class DeliveryTarget:
    url: str
    secrets: tuple[str, ...]  # the current secret first, then one still in its overlap


def endpoint_view(row: asyncpg.Record) -> dict[str, Any]:
    """An endpoint as the API shows it: never its secrets."""
    return {
        "id": str(row["id"]),
        "url": row["url"],
        "event_types": list(row["event_types"]),
        "description": row["description"],
        "enabled": row["enabled"],
        "disabled_reason": row["disabled_reason"],
        "previous_secret_expires_at": _iso(row["previous_expires_at"]),
        "failing_since": _iso(row["failing_since"]),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def attempt_view(row: asyncpg.Record) -> dict[str, Any]:
    test = row["webhook_type"] == TEST_TYPE
    checkpoint = row["webhook_type"] == CHECKPOINT_TYPE  # position: the tree size
    return {
        "id": row["id"],
        "delivery_id": str(row["message_id"]),
        "webhook_id": wire_id(row["message_id"]),
        "attempt": row["attempt"],
        "attempted_at": _iso(row["attempted_at"]),
        "status_code": row["status"],
        "latency_ms": round(row["latency_ms"], 2),
        "error": row["error"],
        "next_retry_at": _iso(row["next_retry_at"]),
        "webhook_type": row["webhook_type"],
        "position": None if test else row["position"],
        "relationship_id": None if test or checkpoint else str(row["relationship_id"]),
        "state": row["state"],
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


async def create(
    store: EventStore,
    url: str,
    event_types: Sequence[str],
    description: str | None,
    *,
    sealer: SecretSealer,
) -> tuple[dict[str, Any], str]:
    """A new endpoint and its secret (shown once, stored sealed). It receives
    what is recorded from now on."""
    secret = new_secret()
    sealed = sealer.seal(secret)
    row = await store.with_connection(
        lambda c: c.fetchrow(_CREATE, uuid4(), url, list(event_types), description, sealed)
    )
    return endpoint_view(row), secret


async def list_page(store: EventStore, after: UUID | None, limit: int) -> list[dict[str, Any]]:
    rows = await store.with_connection(lambda c: c.fetch(_LIST, after, limit))
    return [endpoint_view(r) for r in rows]


async def get(store: EventStore, endpoint_id: UUID) -> dict[str, Any] | None:
    row = await store.with_connection(lambda c: c.fetchrow(_GET, endpoint_id))
    return None if row is None else endpoint_view(row)


async def update(
    store: EventStore,
    endpoint_id: UUID,
    *,
    url: str | None,
    event_types: Sequence[str] | None,
    description: str | None,
    enabled: bool | None,
) -> dict[str, Any] | None:
    types = None if event_types is None else list(event_types)
    row = await store.with_connection(
        lambda c: c.fetchrow(_UPDATE, endpoint_id, url, types, description, enabled)
    )
    return None if row is None else endpoint_view(row)


async def delete(store: EventStore, endpoint_id: UUID) -> bool:
    return await store.with_connection(lambda c: c.fetchval(_DELETE, endpoint_id)) is not None


async def rotate_secret(
    store: EventStore, endpoint_id: UUID, *, sealer: SecretSealer
) -> tuple[str, datetime] | None:
    """A new secret (stored sealed); the old one keeps signing for ROTATION_OVERLAP."""
    secret = new_secret()
    sealed = sealer.seal(secret)
    overlap = ROTATION_OVERLAP.total_seconds()
    expires = await store.with_connection(
        lambda c: c.fetchval(_ROTATE, endpoint_id, sealed, overlap)
    )
    return None if expires is None else (secret, expires)


async def delivery_targets(
    store: EventStore, endpoint_ids: Sequence[UUID], *, sealer: SecretSealer
) -> dict[UUID, DeliveryTarget]:
    """Where to deliver and the secrets in force, opened. An endpoint whose
    secret does not open (sealed, and no key or another key) is left out and
    logged: its messages wait, and the other endpoints' go."""
    rows = await store.with_connection(lambda c: c.fetch(_TARGETS, list(endpoint_ids)))
    now = datetime.now(UTC)
    targets = {}
    for row in rows:
        try:
            secrets = [sealer.open(row["secret"])]
            if (
                row["previous_secret"]
                and row["previous_expires_at"]
                and row["previous_expires_at"] > now
            ):
                secrets.append(sealer.open(row["previous_secret"]))
        except SecretUnavailable as exc:
            log.error("webhook endpoint %s cannot be signed for: %s", row["id"], exc)
            continue
        targets[row["id"]] = DeliveryTarget(row["url"], tuple(secrets))
    return targets


async def mark_healthy(conn: asyncpg.Connection, endpoint_id: UUID) -> None:
    await conn.execute(_HEALTHY, endpoint_id)


async def mark_failing(conn: asyncpg.Connection, endpoint_id: UUID, limit: timedelta) -> None:
    """Remember when failures began; disable an endpoint failing for `limit`."""
    since = await conn.fetchval(_FAILING, endpoint_id)
    if since is not None and datetime.now(UTC) - since > limit:
        days = limit.total_seconds() / 86400
        await disable(conn, endpoint_id, f"every delivery failed for {days:g} days")


async def disable(conn: asyncpg.Connection, endpoint_id: UUID, reason: str) -> None:
    await conn.execute(_DISABLE, endpoint_id, reason)


async def attempts(
    store: EventStore, endpoint_id: UUID, before: int | None, limit: int
) -> list[dict[str, Any]]:
    rows = await store.with_connection(lambda c: c.fetch(_ATTEMPTS, endpoint_id, before, limit))
    return [attempt_view(r) for r in rows]


async def retry(store: EventStore, endpoint_id: UUID, message_id: UUID) -> bool:
    """Send one message again (whatever its state), now."""
    found = await store.with_connection(lambda c: c.fetchval(_RETRY_ONE, message_id, endpoint_id))
    return found is not None


async def recover(store: EventStore, endpoint_id: UUID, since: datetime) -> int:
    """Send again every message that failed for good since `since`."""
    status = await store.with_connection(lambda c: c.execute(_RECOVER, endpoint_id, since))
    return int(status.split()[-1])


async def send_test(store: EventStore, endpoint_id: UUID) -> UUID | None:
    """Queue a `webhook.test` message for one endpoint (whatever its event
    types), delivered like any message; None if there is no such endpoint.

    A test message belongs to no relationship and to no position of the log:
    it is its own ordering group (its `relationship_id` column is its own
    id), so it waits behind nothing, and its `position` is negative (-1, -2,
    ... per endpoint, under the endpoint's row lock), clear of every log
    position and of the outbox's uniqueness constraint."""
    message = uuid4()
    body = test_cloudevent(endpoint_id, message, datetime.now(UTC))

    async def queue(conn: asyncpg.Connection) -> bool:
        async with conn.transaction():
            if await conn.fetchval(_LOCK_ENDPOINT, endpoint_id) is None:
                return False
            await conn.execute(_INSERT_TEST, message, endpoint_id, TEST_TYPE, body)
            await conn.execute(_WAKE, CHANNEL_PREFIX)
            return True

    return message if await store.with_connection(queue) else None

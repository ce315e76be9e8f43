"""Signed checkpoints of the global log: publishing one, reading them back.

A checkpoint is the tree's size and root hash, as a C2SP `tlog-checkpoint`
note signed with the service's Ed25519 key (service.verifiable.signing_key),
whose key name is the origin. Publishing is serialised across processes by a
transaction-scoped advisory lock (per schema): the publisher reads the last
checkpoint and the tree's size under the lock, so two processes never sign two
checkpoints for one size, and a new one is only signed when the tree has grown.
The cost of publishing is the tree's: computing the root of the new size
(with the stored tree, O(log n) stored nodes), plus one row and one webhook
message per subscribed endpoint.

Each checkpoint is queued, in the same transaction, as a `checkpoint.published`
message for every enabled webhook endpoint that asked for it: it is then
delivered, signed and retried like any webhook message.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from domain.verifiable.note import checkpoint_text, sign
from service.store.eventstore import EventStore
from service.verifiable.signing_key import SigningKey
from service.verifiable.tree import MerkleTree
from service.verifiable.tree_builder import catch_up
from service.webhooks.outbox import (
    CHANNEL_PREFIX,
    CHECKPOINT_GROUP,
    CHECKPOINT_TYPE,
    checkpoint_cloudevent,
    matches,
    message_id,
)

log = logging.getLogger(__name__)

DEFAULT_ORIGIN_PREFIX = "mentorflow.local/"

_LOCK = "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.mentorflow.checkpoints'))"
_LATEST = (
    "SELECT tree_size, root_hash, note, key_name, public_key, created_at FROM checkpoints"
    " ORDER BY tree_size DESC LIMIT 1"
)
_AT = (
    "SELECT tree_size, root_hash, note, key_name, public_key, created_at FROM checkpoints"
    " WHERE tree_size = $1"
)
_INSERT = (
    "INSERT INTO checkpoints (tree_size, root_hash, note, key_name, public_key)"
    " VALUES ($1, $2, $3, $4, $5)"
    " RETURNING tree_size, root_hash, note, key_name, public_key, created_at"
)
_LOG_ID = "SELECT log_id FROM log_identity"
_ENDPOINTS = "SELECT id, event_types FROM webhook_endpoints WHERE deleted_at IS NULL AND enabled"
_QUEUE = (
    "INSERT INTO webhook_messages (id, endpoint_id, position, relationship_id, webhook_type, body)"
    " VALUES ($1, $2, $3, $4, $5, $6::jsonb)"
    " ON CONFLICT ON CONSTRAINT webhook_messages_once DO NOTHING"
)
_WAKE = "SELECT pg_notify($1 || current_schema(), '')"


def wants_checkpoints(event_types: list[str]) -> bool:
    """Checkpoints go to endpoints that name them (`checkpoint.published`,
    `checkpoint.*`): a bare `*` (the default) keeps meaning the relationship
    webhook types it always meant, so receivers written for those are not
    sent a message of another shape."""
    return matches([p for p in event_types if p != "*"], CHECKPOINT_TYPE)


@dataclass(frozen=True)
class StoredCheckpoint:
    origin: str
    tree_size: int
    root_hash: bytes
    note: str
    key_name: str
    public_key: bytes
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """As `GET /v1/checkpoints/...` answers (byte strings in standard base64)."""
        return {
            "origin": self.origin,
            "tree_size": self.tree_size,
            "root_hash": _b64(self.root_hash),
            "timestamp": self.created_at.isoformat(),
            "key_name": self.key_name,
            "public_key": _b64(self.public_key),
            "note": self.note,
        }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _checkpoint(row: asyncpg.Record) -> StoredCheckpoint:
    note: str = row["note"]
    return StoredCheckpoint(
        origin=note.split("\n", 1)[0],
        tree_size=row["tree_size"],
        root_hash=bytes(row["root_hash"]),
        note=note,
        key_name=row["key_name"],
        public_key=bytes(row["public_key"]),
        created_at=row["created_at"],
    )


@dataclass(frozen=True)
class Published:
    checkpoint: StoredCheckpoint
    new: bool
    """False when the tree had not grown: the latest checkpoint is returned."""


class Checkpoints:
    """Publishes and reads the log's signed checkpoints."""

    def __init__(
        self,
        store: EventStore,
        tree: MerkleTree,
        key: Callable[[], SigningKey],
        origin: str | None = None,
    ) -> None:
        self.store = store
        self.tree = tree
        self._key = key
        self._origin = origin
        self._publishing = asyncio.Lock()
        """One publish at a time in this process: a publish waiting on the
        advisory lock holds a pooled connection, and the one holding the lock
        needs another for the tree, so waiters must not be able to fill the pool."""

    def signing_key(self) -> SigningKey:
        return self._key()

    async def origin(self) -> str:
        """MENTORFLOW_LOG_ORIGIN, or `mentorflow.local/<log id>` (the database's own)."""
        if self._origin is None:
            log_id: UUID = await self.store.with_connection(lambda conn: conn.fetchval(_LOG_ID))
            self._origin = f"{DEFAULT_ORIGIN_PREFIX}{log_id}"
        return self._origin

    async def latest(self) -> StoredCheckpoint | None:
        return await self._one(_LATEST)

    async def at(self, tree_size: int) -> StoredCheckpoint | None:
        return await self._one(_AT, tree_size)

    async def _one(self, sql: str, *args: Any) -> StoredCheckpoint | None:
        row = await self.store.with_connection(lambda conn: conn.fetchrow(sql, *args))
        return None if row is None else _checkpoint(row)

    async def publish(self) -> Published:
        """Sign and store a checkpoint of the whole log as committed now (the
        stored tree is brought up to its end first, which costs time in
        proportion to what the builder had not reached), unless the latest one
        already has this size (then it is returned, `new` false)."""
        key = self._key()
        origin = await self.origin()
        await catch_up(self.store)
        async with self._publishing, self.store.transaction() as conn:
            await conn.execute(_LOCK)
            row = await conn.fetchrow(_LATEST)
            latest = None if row is None else _checkpoint(row)
            size = await self.tree.size()
            if latest is not None and size <= latest.tree_size:
                return Published(latest, new=False)
            root = await self.tree.root(size)
            note = sign(checkpoint_text(origin, size, root), origin, key.private_key)
            stored = _checkpoint(
                await conn.fetchrow(_INSERT, size, root, note, origin, key.public_key)
            )
            await _queue_messages(conn, stored)
        log.info("checkpoint published", extra={"tree_size": size, "origin": origin})
        return Published(stored, new=True)


async def _queue_messages(conn: asyncpg.Connection, checkpoint: StoredCheckpoint) -> None:
    endpoints = [
        row["id"] for row in await conn.fetch(_ENDPOINTS) if wants_checkpoints(row["event_types"])
    ]
    if not endpoints:
        return
    for endpoint in endpoints:  # one body each: the CloudEvent id is the message's own
        message = message_id(endpoint, checkpoint.tree_size, CHECKPOINT_TYPE)
        body = checkpoint_cloudevent(
            message,
            checkpoint.origin,
            checkpoint.tree_size,
            _b64(checkpoint.root_hash),
            checkpoint.note,
            checkpoint.created_at,
        )
        await conn.execute(
            _QUEUE, message, endpoint, checkpoint.tree_size, CHECKPOINT_GROUP,
            CHECKPOINT_TYPE, body,
        )  # fmt: skip
    await conn.execute(_WAKE, CHANNEL_PREFIX)

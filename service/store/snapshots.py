"""The snapshots table: the one place its SQL lives."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.persistence import StoredEvent

from service.store.eventstore import EventStore

_SAVE = (
    # never for an erased relationship: its data key's row is locked first, so
    # an erasure (which deletes snapshots, migration 0070) either waits for
    # this insert and then deletes it, or has committed and is seen here
    "WITH data_key AS MATERIALIZED (SELECT erased_at FROM data_keys WHERE stream_id = $1"
    " FOR SHARE)"
    " INSERT INTO snapshots (stream_id, version, topic, payload) SELECT $1, $2, $3, $4"
    " WHERE NOT EXISTS (SELECT 1 FROM data_key WHERE erased_at IS NOT NULL)"
    " ON CONFLICT (stream_id, version) DO NOTHING"
)
_LATEST = (
    "SELECT version, topic, payload FROM snapshots WHERE stream_id = $1"
    " AND ($2::bigint IS NULL OR version <= $2) ORDER BY version DESC LIMIT 1"
)


class SnapshotStore:
    def __init__(self, store: EventStore):
        self._store = store

    async def save(self, snapshot: StoredEvent) -> None:
        """Idempotent: a snapshot of a version is the same whoever takes it."""
        await self._store.with_connection(
            lambda conn: conn.execute(
                _SAVE,
                snapshot.originator_id,
                snapshot.originator_version,
                snapshot.topic,
                snapshot.state,
            )
        )

    async def latest(self, stream_id: UUID, *, at_most: int | None = None) -> StoredEvent | None:
        row = await self._store.with_connection(
            lambda conn: conn.fetchrow(_LATEST, stream_id, at_most)
        )
        if row is None:
            return None
        return StoredEvent(stream_id, row["version"], row["topic"], row["payload"])

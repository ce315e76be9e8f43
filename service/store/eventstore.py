"""The event store: appends, stream and global-log reads, subscriptions,
hash-chain verification and checkpoints, all on one asyncpg pool.

The SQL for the events table lives here and in `migrations/`; nowhere else.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

from service.store import database
from service.store.errors import StoreUnavailable, TrackingConflict
from service.store.group_commit import GroupCommitter
from service.store.migrations import migrate, pending_migrations
from service.store.records import (
    AppendRequest,
    AppendResult,
    NewEvent,
    StoredRecord,
    Tracking,
    VerifyResult,
)
from service.store.subscriptions import Notifier, SharedReads, Subscription

T = TypeVar("T")
log = logging.getLogger(__name__)

_RECORD_COLUMNS = (
    "SELECT e.position, e.stream_id, e.version, e.event_id, e.topic, e.payload, e.metadata,"
    " e.recorded_at, e.chain_hash, k.wrapped_key FROM events e"
    " LEFT JOIN data_keys k ON k.stream_id = e.stream_id"
)
"""A record's columns, with its relationship's wrapped data key (docs/erasure.md):
read in the same statement, so a record is never decoded with a key that was
destroyed before the record was read, in this process or any other."""
_READ_STREAM = (
    _RECORD_COLUMNS + " WHERE e.stream_id = $1"
    " AND ($2::bigint IS NULL OR version >= $2) AND ($3::bigint IS NULL OR version <= $3)"
    " AND ($4::timestamptz IS NULL OR recorded_at <= $4) ORDER BY version"
)
_READ_LOG = (
    _RECORD_COLUMNS + " WHERE position > $1"
    " AND ($3::bigint IS NULL OR position <= $3)"
    " AND (cardinality($4::text[]) = 0 OR topic = ANY($4)) ORDER BY position LIMIT $2"
)
_READ_LOG_OF_PROGRAMS = (
    _RECORD_COLUMNS + " WHERE position > $1 AND e.stream_id IN"  # noqa: S608
    " (SELECT stream_id FROM relationship_programs WHERE program_id = ANY($3::text[]))"
    " ORDER BY position LIMIT $2"
)
_STREAM_VERSION = "SELECT max(version) FROM events WHERE stream_id = $1"
_VERSION_AT = "SELECT max(version) FROM events WHERE stream_id = $1 AND recorded_at <= $2"
_MAX_POSITION = "SELECT last_position FROM event_position"
_CHAIN = (
    "SELECT version, chain_hash, mf_canonical(position, stream_id, version, event_id, topic,"
    " payload, metadata, recorded_at) AS canonical FROM events WHERE stream_id = $1"
    " ORDER BY version"
)
_CHAINS = (
    "SELECT stream_id, version, event_id, chain_hash, mf_canonical(position, stream_id, version,"
    " event_id, topic, payload, metadata, recorded_at) AS canonical FROM events"
    " WHERE stream_id = ANY($1::uuid[]) ORDER BY stream_id, version"
)
_NEXT_STREAM_IDS = (
    "WITH RECURSIVE ids(stream_id) AS ("
    " (SELECT stream_id FROM events WHERE stream_id > $1 ORDER BY stream_id LIMIT 1)"
    " UNION ALL"
    " SELECT (SELECT e.stream_id FROM events e WHERE e.stream_id > ids.stream_id"
    "  ORDER BY e.stream_id LIMIT 1) FROM ids WHERE ids.stream_id IS NOT NULL)"
    " SELECT stream_id FROM ids WHERE stream_id IS NOT NULL LIMIT $2"
)
_FIRST_STREAM_IDS = _NEXT_STREAM_IDS.replace("WHERE stream_id > $1 ", "").replace("$2", "$1")
"""A page of stream ids in id order, by a loose index scan over the
(stream_id, version) index: one index probe per stream, so paging through every
stream costs what the streams are, not what the events are. The first page
has a statement of its own: `$1 IS NULL OR stream_id > $1` would let a generic
plan filter the index from its start on every page (quadratic again)."""
_MISSING_POSITIONS = (
    "SELECT p FROM generate_series(1, (SELECT last_position FROM event_position)) AS p"
    " WHERE NOT EXISTS (SELECT 1 FROM events WHERE position = p) LIMIT $1"
)
_TRACKING_POSITION = "SELECT position FROM tracking WHERE name = $1"
_ADVANCE_TRACKING = "SELECT mf_advance_tracking($1, $2)"

READ_RETRIES = 1
SHARED_READ_TTL = 0.2
"""Seconds a page of the log's head is shared between subscriptions
(SharedReads): twice the pacing interval of the live projections, whose
reads are staggered over it (``phase``), so that each still gets the page
the first one read when a busy loop wakes it late (under load the last of
them asked 115 to 165 ms after the read, and read again for itself). A
page handed out late only delays that reader's next read: it reads again
from the end of it."""
CLOSE_TIMEOUT_S = 10.0


def record_of(row: asyncpg.Record) -> StoredRecord:
    """A row of `read_log_rows` as a stored record."""
    return _record(row)


def _record(row: asyncpg.Record) -> StoredRecord:
    return StoredRecord(
        position=row["position"],
        stream_id=UUID(bytes=row["stream_id"].bytes),
        version=row["version"],
        event_id=UUID(bytes=row["event_id"].bytes),
        topic=row["topic"],
        payload=row["payload"],
        metadata=row["metadata"],
        recorded_at=row["recorded_at"],
        chain_hash=row["chain_hash"],
        data_key=row["wrapped_key"],
    )


@dataclass(frozen=True)
class StreamChain:
    """A stream's chain check (`EventStore.verify_streams`)."""

    result: VerifyResult
    last_version: int
    first_invalid_event_id: UUID | None = None
    """The id of the event stored at the first invalid version, if one is."""


def _verify_chain(
    stream_id: UUID, rows: Sequence[asyncpg.Record], first_version: int
) -> VerifyResult:
    previous = b""
    for expected_version, row in enumerate(rows, start=first_version):
        if row["version"] != expected_version:
            return VerifyResult(
                stream_id, False, len(rows), expected_version, "version missing or reordered"
            )
        previous = hashlib.sha256(previous + row["canonical"]).digest()
        if previous != row["chain_hash"]:
            return VerifyResult(
                stream_id, False, len(rows), expected_version, "content does not match chain"
            )
    return VerifyResult(stream_id, True, len(rows))


class EventStore:
    """Create with `await EventStore.open(dsn, schema)`; close with `await store.close()`."""

    def __init__(self, pool: asyncpg.Pool, dsn: str, schema: str, *, max_in_flight: int = 1):
        self.pool = pool
        self.schema = schema
        self.channel = f"mentorflow_events_{schema}"
        self._notifier = Notifier(dsn, schema, self.channel)
        self._shared_reads = SharedReads(self._read_log_positional, SHARED_READ_TTL)
        self._committer = GroupCommitter(
            lambda: database.connect(dsn, schema), self.channel, max_in_flight=max_in_flight
        )

    @classmethod
    async def open(
        cls, dsn: str, schema: str, *, pool_size: int = 10, run_migrations: bool = True
    ) -> EventStore:
        pool = await database.create_pool(dsn, schema, max_size=pool_size)
        store = cls(pool, dsn, schema)
        if run_migrations:
            await store.migrate()
        return store

    async def migrate(self) -> list[int]:
        return await self.with_connection(lambda conn: migrate(conn, self.schema))

    async def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Finish the appends in flight, then close the pool; a connection
        someone never released is terminated after `timeout`, so shutting
        down cannot hang."""
        try:
            async with asyncio.timeout(timeout):
                await self._committer.close()
        except TimeoutError:
            log.warning("appends still in flight at close; abandoning them")
        await self._notifier.stop()
        try:
            async with asyncio.timeout(timeout):
                await self.pool.close()
        except TimeoutError:
            log.warning("connections still in use at close; terminating them")
            self.pool.terminate()

    # --- appending -------------------------------------------------------------

    async def append(
        self,
        events: Sequence[NewEvent],
        *,
        idempotency_key: str | None = None,
        fingerprint: bytes | None = None,
        tracking: Tracking | None = None,
    ) -> AppendResult:
        """Store `events` atomically. Each stream's events must continue it:
        the first at its current version + 1 (any version for a new stream).

        Raises VersionConflict, IdempotencyConflict, TrackingConflict,
        DuplicateEvent or StoreUnavailable.
        """
        request = AppendRequest(tuple(events), idempotency_key, fingerprint, tracking)
        return await self._committer.submit(request)

    @property
    def append_batch_sizes(self) -> Counter[int]:
        """How many group-commit batches of each size (in appends) this store sent."""
        return self._committer.batch_sizes

    # --- reading ---------------------------------------------------------------

    async def read_stream(
        self,
        stream_id: UUID,
        *,
        from_version: int | None = None,
        to_version: int | None = None,
        as_of: datetime | None = None,
    ) -> list[StoredRecord]:
        rows = await self._fetch(_READ_STREAM, stream_id, from_version, to_version, as_of)
        return [_record(r) for r in rows]

    async def stream_version(self, stream_id: UUID) -> int | None:
        value: int | None = await self._fetchval(_STREAM_VERSION, stream_id)
        return value

    async def version_at(self, stream_id: UUID, as_of: datetime) -> int | None:
        """The stream's version as it was at `as_of` (by recorded time)."""
        value: int | None = await self._fetchval(_VERSION_AT, stream_id, as_of)
        return value

    async def read_log(
        self,
        after: int = 0,
        limit: int = 500,
        topics: Sequence[str] = (),
        *,
        until: int | None = None,
    ) -> list[StoredRecord]:
        """Records with positions after `after` (and up to `until`), in commit order."""
        rows = await self._fetch(_READ_LOG, after, limit, until, list(topics))
        return [_record(r) for r in rows]

    async def read_log_rows(self, after: int, limit: int) -> list[asyncpg.Record]:
        """`read_log` as the database's rows (columns: position, stream_id,
        version, event_id, topic, payload, metadata, recorded_at, chain_hash,
        wrapped_key; `record_of` makes a record of one), for a reader that
        needs few of them as records: a projection's rebuild, which decodes
        only the payloads its projection reads."""
        return await self._fetch(_READ_LOG, after, limit, None, [])

    async def read_log_of_programs(
        self, after: int, limit: int, program_ids: Sequence[str]
    ) -> list[StoredRecord]:
        """Like `read_log`, only the events of relationships in `program_ids`
        (table relationship_programs, written when each one is opened)."""
        rows = await self._fetch(_READ_LOG_OF_PROGRAMS, after, limit, list(program_ids))
        return [_record(r) for r in rows]

    async def max_position(self) -> int:
        value: int = await self._fetchval(_MAX_POSITION)
        return value

    def subscribe(
        self,
        after: int = 0,
        topics: Sequence[str] = (),
        *,
        poll_interval: float = 1.0,
        min_interval: float = 0.0,
        phase: float = 0.0,
    ) -> Subscription:
        """Follow the global log from `after`: catch up, then wait for appends
        (reading at most once per `min_interval` while the log is busy, on
        ticks `phase` seconds into each interval: see `next_tick`)."""
        self._notifier.start()
        return Subscription(
            self._shared_reads,
            self._notifier,
            after,
            topics,
            poll_interval=poll_interval,
            min_interval=min_interval,
            phase=phase,
        )

    async def _read_log_positional(
        self, after: int, limit: int, topics: Sequence[str]
    ) -> list[StoredRecord]:
        return await self.read_log(after, limit, topics)

    # --- verifying ---------------------------------------------------------------

    async def verify_stream(self, stream_id: UUID, *, first_version: int = 1) -> VerifyResult:
        """Recompute the stream's hash chain over what is stored now and name the
        first version that is missing, out of place or altered."""
        rows = await self._fetch(_CHAIN, stream_id)
        return _verify_chain(stream_id, rows, first_version)

    async def verify_streams(self, stream_ids: Sequence[UUID]) -> dict[UUID, StreamChain]:
        """`verify_stream` for many streams in one read: each stream present
        in the store, with its chain's result, its last version and the id of
        the event at its first invalid version."""
        rows = await self._fetch(_CHAINS, list(stream_ids))
        chains: dict[UUID, StreamChain] = {}
        start = 0
        for end in range(1, len(rows) + 1):
            if end < len(rows) and rows[end]["stream_id"] == rows[start]["stream_id"]:
                continue
            stream_rows = rows[start:end]
            stream_id = UUID(bytes=stream_rows[0]["stream_id"].bytes)
            result = _verify_chain(stream_id, stream_rows, 1)
            invalid = result.first_invalid_version
            event_id = next(
                (UUID(bytes=r["event_id"].bytes) for r in stream_rows if r["version"] == invalid),
                None,
            )
            chains[stream_id] = StreamChain(result, stream_rows[-1]["version"], event_id)
            start = end
        return chains

    async def stream_ids(self, after: UUID | None = None, limit: int = 1000) -> list[UUID]:
        """Stream ids in id order, the first `limit` after `after` (for paging)."""
        if after is None:
            rows = await self._fetch(_FIRST_STREAM_IDS, limit)
        else:
            rows = await self._fetch(_NEXT_STREAM_IDS, after, limit)
        return [UUID(bytes=r["stream_id"].bytes) for r in rows]

    async def missing_positions(self, limit: int = 100) -> list[int]:
        """Global positions handed out but absent now: an event deleted directly."""
        rows = await self._fetch(_MISSING_POSITIONS, limit)
        return [r["p"] for r in rows]

    # --- checkpoints -------------------------------------------------------------

    async def tracking_position(self, name: str) -> int | None:
        value: int | None = await self._fetchval(_TRACKING_POSITION, name)
        return value

    async def insert_tracking(self, tracking: Tracking) -> None:
        async with self.transaction() as conn:
            await self.advance_tracking(conn, tracking)

    @staticmethod
    async def advance_tracking(conn: asyncpg.Connection, tracking: Tracking) -> None:
        """Move a checkpoint forward inside the caller's transaction, so a
        projection's rows and its checkpoint commit together."""
        if not await conn.fetchval(_ADVANCE_TRACKING, tracking.name, tracking.position):
            raise TrackingConflict(tracking.name, tracking.position)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                yield conn
        except Exception as exc:
            if database.is_connection_error(exc):
                raise StoreUnavailable(f"database unreachable: {exc}") from exc
            raise

    async def pending_migrations(self) -> list[int]:
        return await self.with_connection(lambda conn: pending_migrations(conn, self.schema))

    async def ping(self) -> bool:
        try:
            await self._fetchval("SELECT 1")
        except StoreUnavailable:
            return False
        return True

    # --- plumbing ----------------------------------------------------------------

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self.with_connection(lambda conn: conn.fetch(sql, *args))

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        return await self.with_connection(lambda conn: conn.fetchval(sql, *args))

    async def with_connection(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run read-only or idempotent work on a pooled connection (tables other
        than the events use this too); a connection the server dropped is
        replaced once before the call raises StoreUnavailable."""
        for attempt in range(READ_RETRIES + 1):
            try:
                async with self.pool.acquire() as conn:
                    return await work(conn)
            except Exception as exc:
                if not database.is_connection_error(exc):
                    raise
                if attempt == READ_RETRIES:
                    raise StoreUnavailable(f"database unreachable: {exc}") from exc
        raise AssertionError("unreachable")

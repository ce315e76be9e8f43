"""The tree builder: extends the stored Merkle tree as the global log grows.

A background task (every `serve` and `worker` process runs one; a PostgreSQL
advisory lock lets one of them build at a time, the others wait to take over)
follows the log: woken by the store's notifications, or by polling. Each step
reads the next run of events after the built size, computes their leaf hashes
in SQL (`SHA-256(0x00 || mf_canonical(...))`), the perfect subtrees they
complete in Python (`merkle.completed_nodes`), and writes the nodes and the new
size in one transaction. Appends never wait for it.

Only a contiguous run of positions is taken: the builder stops before a
position that is not there (yet), so a lower position committing late can
never be skipped. The size row is locked for the step, so two builders (or a
test's `catch_up` beside a running process) serialise instead of colliding.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from domain.verifiable import merkle
from service.platform.supervisor import Supervisor
from service.store.database import connect
from service.store.eventstore import EventStore

log = logging.getLogger("mentorflow.tree_builder")

TASK = "merkle-tree-builder"
BATCH = 20_000
"""Leaves per transaction: large enough that a backlog of a million events is
built in well under a checkpoint interval, small enough to keep each
transaction short."""

_LOCK_KEY = "mentorflow.merkle_tree.{schema}"
_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtext($1))"
_ASYNC_COMMIT = "SET LOCAL synchronous_commit = off"
_SIZE_FOR_UPDATE = "SELECT size FROM merkle_tree WHERE singleton FOR UPDATE"
_LAST_POSITION = "SELECT last_position FROM event_position"
_LEAVES = (
    "SELECT position, sha256('\\x00'::bytea || mf_canonical(position, stream_id, version,"
    " event_id, topic, payload, metadata, recorded_at)) AS leaf FROM events"
    " WHERE position > $1 AND position <= $2 ORDER BY position"
)
NODES = (
    "SELECT w.level, w.idx, n.hash FROM unnest($1::smallint[], $2::bigint[]) AS w(level, idx)"
    " CROSS JOIN LATERAL"
    " (SELECT hash FROM merkle_nodes WHERE level = w.level AND idx = w.idx LIMIT 1) AS n"
)
"""The stored nodes of a set, one primary-key probe each. Not ``(level, idx)
IN (SELECT * FROM unnest(...))``, nor a plain lateral join (PostgreSQL
flattens it into the same join): a connection keeps the generic plan it made
while the table was new and unanalysed (estimated at ~1,000 rows), and for
those it is a hash join over a sequential scan of the whole table, kept as
the table grows (the builder read all of merkle_nodes, 2 to 6 ms, on every
step under load). ``LIMIT 1`` keeps the probe a subquery of its own, whose
every plan is an index scan."""
_SET_SIZE = "UPDATE merkle_tree SET size = $1, updated_at = clock_timestamp() WHERE singleton"

MIN_INTERVAL = 0.25
"""Seconds between steps while following the log: appends that arrive meanwhile
are taken together, so the builder commits a few times a second at most
instead of after every group commit of the appends."""

Progress = Callable[[int, int], None]
"""Called with (built size, last position of the log) after every step."""


async def fetch_nodes(
    conn: asyncpg.Connection, wanted: set[merkle.Node]
) -> dict[merkle.Node, bytes]:
    """The stored hashes of `wanted` (those that exist), in one query."""
    if not wanted:
        return {}
    levels, indexes = zip(*wanted, strict=True)
    rows = await conn.fetch(NODES, list(levels), list(indexes))
    return {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows}


async def extend(conn: asyncpg.Connection, batch: int = BATCH) -> tuple[int, int]:
    """One step: add up to `batch` leaves. Returns (leaves added, built size).

    Committed without waiting for the flush to disk: everything here can be
    recomputed from the events, a crash can only lose a whole step (the nodes
    and the size together), and the appends' own commits are not made to queue
    behind it."""
    async with conn.transaction():
        await conn.execute(_ASYNC_COMMIT)
        size: int = await conn.fetchval(_SIZE_FOR_UPDATE)
        rows = await conn.fetch(_LEAVES, size, size + batch)
        leaves: list[bytes] = []
        for expected, row in enumerate(rows, start=size + 1):
            if row["position"] != expected:
                break  # a position not there (yet): never build past it
            leaves.append(bytes(row["leaf"]))
        if not leaves:
            return 0, size
        frontier = merkle.frontier_nodes(size)
        known = await fetch_nodes(conn, frontier)
        if len(known) != len(frontier):
            missing = sorted(frontier - set(known))
            raise RuntimeError(f"the stored tree of size {size} lacks its nodes {missing}")
        made = merkle.completed_nodes(size, leaves, known)
        await conn.copy_records_to_table(  # binary COPY: the fastest way in
            "merkle_nodes",
            records=[(level, index, value) for (level, index), value in made.items()],
            columns=("level", "idx", "hash"),
        )
        await conn.execute(_SET_SIZE, size + len(leaves))
        return len(leaves), size + len(leaves)


async def catch_up(store: EventStore, batch: int = BATCH) -> int:
    """Build the tree up to the end of the log now (tests, tools); the built size."""

    async def run(conn: asyncpg.Connection) -> int:
        while True:
            added, size = await extend(conn, batch)
            if added < batch:
                return size

    return await store.with_connection(run)


@dataclass
class TreeBuilder:
    """The background task that keeps the stored tree up with the log."""

    store: EventStore
    dsn: str
    batch: int = BATCH
    poll_interval: float = 1.0
    takeover_interval: float = 1.0
    min_interval: float = MIN_INTERVAL
    on_progress: Progress | None = None
    leading: bool = False

    async def _locked_connection(self) -> asyncpg.Connection:
        """A connection holding the builder's lock. A standby polls for it
        without keeping a connection open in between."""
        key = _LOCK_KEY.format(schema=self.store.schema)
        while True:
            conn = await connect(self.dsn, self.store.schema)
            locked = False
            try:
                locked = await conn.fetchval(_TRY_LOCK, key)
            finally:
                if not locked:
                    conn.terminate()
            if locked:
                return conn
            await asyncio.sleep(self.takeover_interval)

    def start(self, supervisor: Supervisor) -> None:
        supervisor.spawn(TASK, self.run)

    async def run(self) -> None:
        """Wait for the builder's lock, then follow the log until cancelled.
        Closing the connection (also a crash's) releases the lock."""
        conn = await self._locked_connection()
        try:
            self.leading = True
            woken = asyncio.Event()
            await conn.add_listener(self.store.channel, lambda *_: woken.set())
            log.info("this process builds the Merkle tree")
            while True:
                woken.clear()
                started = time.monotonic()
                added, size = await extend(conn, self.batch)
                if self.on_progress is not None:
                    self.on_progress(size, await conn.fetchval(_LAST_POSITION))
                if added < self.batch:  # caught up: wait for appends
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.poll_interval):
                            await woken.wait()
                    await asyncio.sleep(self.min_interval - (time.monotonic() - started))
        finally:
            self.leading = False
            if not conn.is_closed():
                conn.terminate()

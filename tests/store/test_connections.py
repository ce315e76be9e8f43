"""What every connection of the service is set up with."""

from __future__ import annotations

from uuid import uuid4

import asyncpg
import pytest

from service.store import database
from service.store.eventstore import _READ_STREAM, EventStore

pytestmark = pytest.mark.db


async def test_pooled_and_dedicated_connections_run_without_jit(
    store: EventStore, dsn: str
) -> None:
    """On a large store with missing statistics the planner's estimate for a
    one-relationship lookup passed jit_above_cost: every load compiled."""
    async with store.pool.acquire() as conn:
        assert await conn.fetchval("SHOW jit") == "off"
    conn = await database.connect(dsn, store.schema)
    try:
        assert await conn.fetchval("SHOW jit") == "off"
        assert await conn.fetchval("SHOW search_path") == store.schema
    finally:
        await conn.close()


async def test_reading_a_stream_never_starts_parallel_workers(store: EventStore, dsn: str) -> None:
    """On a large store with missing statistics the planner's estimate for one
    relationship's events passed the thresholds for a parallel plan: every
    load of a relationship's latest version started two workers (12 to 22 ms
    instead of 0.1 ms). Here the thresholds are lowered so that the test's
    small table looks like that one to the planner."""
    provoke = (
        "SET LOCAL parallel_setup_cost = 0; SET LOCAL parallel_tuple_cost = 0;"
        " SET LOCAL min_parallel_table_scan_size = 0; SET LOCAL min_parallel_index_scan_size = 0;"
        " SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off"
    )
    async with store.pool.acquire() as conn:
        assert await _plan(conn, provoke) == "serial"
    conn = await database.connect(dsn, store.schema)
    try:
        assert await _plan(conn, provoke) == "serial"
        # the same statement on a connection without the service's settings:
        # the provocation does make the planner go parallel
        await conn.execute("SET max_parallel_workers_per_gather = 2")
        assert await _plan(conn, provoke) == "parallel"
    finally:
        await conn.close()


async def _plan(conn: asyncpg.Connection, provoke: str) -> str:
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute(provoke)
        rows = await conn.fetch("EXPLAIN " + _READ_STREAM, uuid4(), None, None, None)
    finally:
        await transaction.rollback()
    plan = "\n".join(row[0] for row in rows)
    return "parallel" if "Gather" in plan else "serial"

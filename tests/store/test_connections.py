"""What every connection of the service is set up with."""

from __future__ import annotations

import pytest

from service.store import database
from service.store.eventstore import EventStore

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

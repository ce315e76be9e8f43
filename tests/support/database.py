"""The PostgreSQL the tests use: DATABASE_URL when set, otherwise the embedded one.

Every test works in a schema of its own, so runs never see each other's rows
and the same database can serve many runs.
"""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg

from service.store.database import embedded_database_url

REPO = Path(__file__).resolve().parents[2]


@functools.cache
def database_url_for_tests() -> str:
    return os.environ.get("DATABASE_URL") or embedded_database_url(REPO / ".mentorflow-test")


def new_schema_name(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def drop_schema_sync(dsn: str, schema: str) -> None:
    """Usable from sync code and from inside a running event loop alike."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, drop_schema(dsn, schema)).result()

"""Migrations are idempotent and safe when several processes start at once."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from service.store.migrations import available_migrations, migrate, pending_migrations
from tests.support.database import drop_schema, new_schema_name

pytestmark = pytest.mark.db


async def _applied(dsn: str, schema: str) -> list[int]:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        return await pending_migrations(conn, schema)
    finally:
        await conn.close()


async def test_migrate_twice_applies_once(dsn: str) -> None:
    schema = new_schema_name()
    conn = await asyncpg.connect(dsn)
    try:
        assert await migrate(conn, schema) == [m.version for m in available_migrations()]
        assert await migrate(conn, schema) == []
        assert await _applied(dsn, schema) == []
    finally:
        await conn.close()
        await drop_schema(dsn, schema)


async def test_concurrent_migrations_apply_each_version_once(dsn: str) -> None:
    schema = new_schema_name()
    conns = [await asyncpg.connect(dsn) for _ in range(5)]
    try:
        results = await asyncio.gather(*[migrate(c, schema) for c in conns])
        applied = sorted(v for result in results for v in result)
        assert applied == [m.version for m in available_migrations()]
        assert await _applied(dsn, schema) == []
    finally:
        for conn in conns:
            await conn.close()
        await drop_schema(dsn, schema)


async def test_unmigrated_schema_reports_pending(dsn: str) -> None:
    schema = new_schema_name()
    assert await _applied(dsn, schema) == [m.version for m in available_migrations()]

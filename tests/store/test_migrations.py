"""Migrations are idempotent and safe when several processes start at once."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import asyncpg
import pytest

from service.access.tokens import BOOTSTRAP_NAME, TokenRegistry, hash_token, new_token
from service.store.eventstore import EventStore
from service.store.migrations import available_migrations, migrate, pending_migrations
from service.store.records import NewEvent
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


async def test_a_store_of_an_earlier_release_upgrades_and_its_chains_continue(dsn: str) -> None:
    """0021 replaces the append function of 0001: a schema migrated before it
    (whose events the old function chained) takes it, and appends continue."""
    schema, stream = new_schema_name(), uuid4()
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(f"CREATE SCHEMA {schema}; SET LOCAL search_path TO {schema}")
            for migration in available_migrations():
                if migration.version < 21:
                    await conn.execute(migration.sql)
            await conn.execute(
                "CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await conn.execute(
                "INSERT INTO schema_migrations (version, name)"
                " SELECT v, 'earlier' FROM unnest($1::int[]) AS v",
                [m.version for m in available_migrations() if m.version < 21],
            )
            old_append = (  # the signature 0001 shipped with
                "SELECT status FROM mf_append(ARRAY[1], ARRAY[NULL]::text[], ARRAY[NULL]::bytea[],"
                " ARRAY[NULL]::text[], ARRAY[NULL]::bigint[], ARRAY[1], ARRAY[$1::uuid],"
                " ARRAY[1::bigint], ARRAY[$2::uuid], ARRAY['t'], ARRAY['\\x7b7d'::bytea],"
                " ARRAY['{}'], 'mentorflow_upgrade_test')"
            )
            assert await conn.fetchval(old_append, stream, uuid4()) == "ok"
    finally:
        await conn.close()
    store = await EventStore.open(dsn, schema)
    try:
        await store.append([NewEvent(stream, 2, "t", b"{}")])
        assert [r.version for r in await store.read_stream(stream)] == [1, 2]
        assert (await store.verify_stream(stream)).valid
    finally:
        await store.close()
        await drop_schema(dsn, schema)


async def test_tokens_of_an_earlier_release_keep_working_after_0050(dsn: str) -> None:
    """Rows written before tokens had identities: their tokens still
    authenticate (as who they were, with no program limit); one that took the
    bootstrap token's reserved name is renamed, and stored responses keyed by
    name (held in clear) are gone."""
    schema = new_schema_name()
    old_writer, squatter = new_token(), new_token()
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(f"CREATE SCHEMA {schema}; SET LOCAL search_path TO {schema}")
            earlier = [m for m in available_migrations() if m.version < 50]
            for migration in earlier:
                await conn.execute(migration.sql)
            await conn.execute(
                "CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await conn.execute(
                "INSERT INTO schema_migrations (version, name)"
                " SELECT v, 'earlier' FROM unnest($1::int[]) AS v",
                [m.version for m in earlier],
            )
            await conn.execute(
                "INSERT INTO api_tokens (id, name, role, token_hash) VALUES"
                " ($1, 'Old Writer (ops)', 'writer', $2), ($3, 'bootstrap-admin', 'admin', $4)",
                uuid4(),
                hash_token(old_writer),
                uuid4(),
                hash_token(squatter),
            )
            await conn.execute(
                "INSERT INTO idempotent_responses (principal, key, fingerprint, status, body)"
                " VALUES ('Old Writer (ops)', 'k', '\\x00', 201, '{\"notes\": \"clear\"}')"
            )
    finally:
        await conn.close()
    store = await EventStore.open(dsn, schema)
    try:
        registry = TokenRegistry(store)
        writer = await registry.authenticate(old_writer)
        assert writer is not None and writer.name == "Old Writer (ops)"
        assert writer.role == "writer" and not writer.limited
        renamed = await registry.authenticate(squatter)
        assert renamed is not None and renamed.name != BOOTSTRAP_NAME
        listed, _ = await registry.list()
        assert sorted(t.name for t in listed) == sorted([writer.name, renamed.name])
        left = await store.with_connection(
            lambda c: c.fetchval("SELECT count(*) FROM idempotent_responses")
        )
        assert left == 0
        assert await registry.revoke(writer.id)
        assert await TokenRegistry(store).authenticate(old_writer) is None
    finally:
        await store.close()
        await drop_schema(dsn, schema)

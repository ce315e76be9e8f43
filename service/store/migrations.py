"""Versioned SQL migrations, applied at start-up.

Each file `migrations/NNNN_name.sql` is applied once, in order, inside one
transaction that also records it. A transaction-scoped advisory lock per schema
makes concurrent start-ups safe: the second process waits, then finds nothing
left to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from service.store.database import quote_ident

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    """The migrations shipped with the package, in version order."""
    found = []
    for entry in resources.files("service.store").joinpath("migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)


async def migrate(conn: asyncpg.Connection, schema: str) -> list[int]:
    """Bring `schema` up to date; returns the versions applied by this call."""
    applied_now: list[int] = []
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('mentorflow.migrate.' || $1::text))", schema
        )
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        await conn.execute(f"SET LOCAL search_path TO {quote_ident(schema)}")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version int PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in available_migrations():
            if migration.version in done:
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied_now.append(migration.version)
    return applied_now


async def pending_migrations(conn: asyncpg.Connection, schema: str) -> list[int]:
    """Versions not yet applied to `schema` (used by readiness checks); `conn`
    has `schema` first on its search path, as the store's connections do."""
    exists = await conn.fetchval(
        "SELECT to_regclass(quote_ident($1) || '.schema_migrations') IS NOT NULL", schema
    )
    shipped = [m.version for m in available_migrations()]
    if not exists:
        return shipped
    rows = await conn.fetch("SELECT version FROM schema_migrations")
    done = {r["version"] for r in rows}
    return [v for v in shipped if v not in done]

"""Opening the event store a process works on: the database (embedded or
DATABASE_URL), migrated; or, for commands that only read, an existing one."""

from __future__ import annotations

import asyncio

from service.platform.settings import Settings
from service.store.database import resolve_database_url
from service.store.eventstore import EventStore


class NoDatabase(Exception):
    """A command that only reads found nothing to read; the message says where it looked."""


async def open_store(settings: Settings) -> tuple[str, EventStore]:
    """Start or join the database; its URL and a migrated store on it."""
    dsn = await asyncio.to_thread(resolve_database_url, settings)
    return dsn, await EventStore.open(dsn, settings.db_schema)


async def open_existing_store(settings: Settings) -> tuple[str, EventStore]:
    """Like :func:`open_store`, for commands that read (replay, verify,
    rebuild): they never create an empty database or schema, since then a
    command run from the wrong directory would verify nothing and say "valid".
    An existing store is still brought up to date."""
    if settings.database_url is None:
        cluster = settings.data_dir.resolve() / "postgres"
        if not (cluster / "PG_VERSION").is_file():
            raise NoDatabase(
                f"no Mentorflow database in {cluster} (set MENTORFLOW_DATA_DIR to the"
                " service's data directory, or DATABASE_URL)"
            )
    dsn = await asyncio.to_thread(resolve_database_url, settings)
    store = await EventStore.open(dsn, settings.db_schema, run_migrations=False)
    try:
        found = await store.with_connection(
            lambda conn: conn.fetchval(
                "SELECT to_regclass(quote_ident($1) || '.schema_migrations') IS NOT NULL",
                settings.db_schema,
            )
        )
        if not found:
            where = (settings.database_url and "DATABASE_URL") or str(settings.data_dir.resolve())
            raise NoDatabase(
                f"the database at {where} has no Mentorflow schema {settings.db_schema!r}"
                " (set MENTORFLOW_DB_SCHEMA to the service's schema)"
            )
        await store.migrate()
    except BaseException:
        await store.close()
        raise
    return dsn, store

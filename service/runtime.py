"""Opening what a process needs from its settings: the database (embedded or
DATABASE_URL) and the event store on it, migrated."""

from __future__ import annotations

import asyncio

from service.settings import Settings
from service.store.database import resolve_database_url
from service.store.eventstore import EventStore


async def open_store(settings: Settings) -> tuple[str, EventStore]:
    """Start or join the database; its URL and a migrated store on it."""
    dsn = await asyncio.to_thread(resolve_database_url, settings)
    return dsn, await EventStore.open(dsn, settings.db_schema)

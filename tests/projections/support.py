"""Helpers of the projection tests: a projection that counts how often each
event is applied, histories generated through the aggregate's rules, table dumps."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg

from domain import Relationship
from projections import ProjectedEvent, Projection, all_projections
from service.projection_runner import ProjectionRunner
from service.relationships.repository import RelationshipRepository
from service.store.eventstore import EventStore

APPLIED_DDL = (
    "CREATE TABLE IF NOT EXISTS applied ("
    " position bigint PRIMARY KEY, times integer NOT NULL, backend integer NOT NULL)"
)


class Counter(Projection):
    """Counts applications per position: any event applied twice shows as
    ``times = 2``, and ``backend`` says which connection (process) applied it.
    ``active`` (shared by all instances in a process) catches two workers
    inside ``handle`` at the same time."""

    name = "counter"
    tables = ("applied",)
    active = 0
    overlaps = 0

    def __init__(self, *, fail_at: int | None = None, delay: float = 0.0) -> None:
        self.fail_at = fail_at
        self.delay = delay
        self.failures = 0

    async def handle(self, conn: asyncpg.Connection, batch: Sequence[ProjectedEvent]) -> None:
        Counter.active += 1
        try:
            if Counter.active > 1:
                Counter.overlaps += 1
            await conn.execute(
                "INSERT INTO applied (position, times, backend)"
                " SELECT p, 1, pg_backend_pid() FROM unnest($1::bigint[]) AS p"
                " ON CONFLICT (position) DO UPDATE SET times = applied.times + 1",
                [event.position for event in batch],
            )
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.fail_at is not None and any(e.position == self.fail_at for e in batch):
                self.fail_at = None  # once: the crash happens after the rows were written
                self.failures += 1
                raise RuntimeError("simulated crash between writing rows and the checkpoint")
        finally:
            Counter.active -= 1


async def create_applied_table(store: EventStore) -> None:
    await store.with_connection(lambda conn: conn.execute(APPLIED_DDL))


async def applied(store: EventStore) -> dict[int, int]:
    rows = await store.with_connection(lambda c: c.fetch("SELECT position, times FROM applied"))
    return {row["position"]: row["times"] for row in rows}


async def applied_by(store: EventStore) -> set[int]:
    rows = await store.with_connection(lambda c: c.fetch("SELECT DISTINCT backend FROM applied"))
    return {row["backend"] for row in rows}


def decoder(repository: RelationshipRepository) -> Any:
    return lambda record: repository.decode(record).event


def runner_for(
    store: EventStore,
    dsn: str,
    repository: RelationshipRepository,
    projections: Sequence[Projection] | None = None,
    **options: Any,
) -> ProjectionRunner:
    """A runner with short intervals, so tests do not wait for polls."""
    settings: dict[str, Any] = {
        "poll_interval": 0.05,
        "takeover_interval": 0.05,
        "metrics_interval": 0.2,
        **options,
    }
    return ProjectionRunner(store, dsn, decoder(repository), projections, **settings)


async def dump(
    store: EventStore, projections: Sequence[Projection] | None = None
) -> dict[str, Any]:
    """Every row of the projections' tables, in a canonical order."""
    tables: dict[str, Any] = {}
    for projection in all_projections() if projections is None else projections:
        for table in projection.tables:
            rows = await store.with_connection(functools.partial(_rows, table=table))
            tables[table] = sorted((tuple(_plain(v) for v in r.values()) for r in rows), key=repr)
    return tables


async def _rows(conn: asyncpg.Connection, *, table: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(f"SELECT * FROM {table}")  # noqa: S608
    return rows


async def table_text(store: EventStore, table: str) -> str:
    """The whole table as text (to look for what must not be there)."""
    sql = f"SELECT coalesce(string_agg(x::text, ' '), '') FROM {table} x"  # noqa: S608
    text: str = await store.with_connection(lambda conn: conn.fetchval(sql))
    return text


def _plain(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict | list):
        return repr(value)
    return value


async def save_all(
    repository: RelationshipRepository, relationships: Sequence[Relationship]
) -> int:
    """Save relationships' pending events; returns the log's last position."""
    for relationship in relationships:
        await repository.save(relationship)
    return await repository.store.max_position()

"""Rebuilding a projection blue/green: a new generation built from position
0 beside the serving tables, swapped in once it has caught up with the log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence

import asyncpg

from projections import ProjectedEvent, Projection
from service.platform.tasks import cancel_and_wait
from service.projection_runner.leadership import Leadership
from service.projection_runner.state import (
    ENSURE_STATE,
    INDEXES,
    LOCK_STATE,
    NEW_GENERATION,
    PRIMARY_KEYS,
    SECONDARY_INDEXES,
    SWAPPED,
    Apply,
    EventFailed,
    GenerationChanged,
    ProgressCallback,
    RebuildFailed,
    RebuildProgress,
    RebuildReport,
    shadow_schema,
    tracking_name,
)
from service.store import database
from service.store.database import connect, quote_ident

log = logging.getLogger("service.projection_runner")


class Rebuilding(Leadership):
    """Rebuilds (in the calling process, whoever runs the worker)."""

    # --- rebuilding (blue/green) -------------------------------------------------------------

    async def rebuild(
        self, name: str, progress: ProgressCallback | None = None, *, timeout: float | None = None
    ) -> RebuildReport:
        """Build a new generation of the projection from position 0 beside the
        serving tables and swap it in once it has caught up with the log.

        Runs in the calling process, whether or not a worker runs the
        projection here or elsewhere (that worker keeps the serving tables
        up to date meanwhile, and goes on from the new generation after the
        swap). Raises :class:`RebuildFailed` when a handler fails (the serving
        tables are then unchanged), ValueError for the webhook outbox (never
        rebuilt), TimeoutError after ``timeout`` seconds.
        """
        worker = self._worker(name)
        projection = worker.projection
        if not projection.rebuildable:
            raise ValueError(
                f"{name} is not rebuilt: its rows are history (a rebuild would send them again)"
            )
        started = time.perf_counter()
        target = await self._last_stored_position()

        def report(position: int) -> None:
            if progress is not None:
                progress(RebuildProgress(name, position, target, time.perf_counter() - started))

        async with asyncio.timeout(timeout), self._shadow(projection) as conn:
            generation: int = await conn.fetchval(NEW_GENERATION, name)
            log.info(
                "projection %s: rebuilding beside the serving tables as generation %d",
                name,
                generation,
            )
            checkpoint = tracking_name(name, generation)

            async def apply(events: Sequence[ProjectedEvent]) -> None:
                async with conn.transaction():
                    await self._apply(conn, projection, checkpoint, events)

            # A crash loses nothing durable here: a rebuild starts again from
            # position 0 in a new schema. So its batches need not wait for the
            # WAL to reach the disk (the swap below does).
            await conn.execute("SET synchronous_commit = off")
            position = await self._replay(projection, 0, target, apply, report)
            position = await self._catch_up(projection, position, apply, report)
            main = self.store.schema
            try:
                await build_indexes(conn, projection.tables, main, shadow_schema(main, name))
            except Exception as exc:  # a UNIQUE the new rows break, say
                if database.is_connection_error(exc):
                    raise
                raise RebuildFailed(name, None, exc) from exc
            position = await self._catch_up(projection, position, apply, report)
            await conn.execute("RESET synchronous_commit")
            position = await self._swap(conn, projection, generation, position)
        report(max(target, position))
        log.info(
            "projection %s: generation %d swapped in at position %d", name, generation, position
        )
        return RebuildReport(name, generation, target, time.perf_counter() - started, position)

    async def _catch_up(
        self, projection: Projection, position: int, apply: Apply, report: Callable[[int], None]
    ) -> int:
        """Replay what the log gained since ``position`` until less than a
        batch is left (the swap applies the rest, holding the lock)."""
        while (head := await self.store.max_position()) - position > self.batch_size:
            reached = await self._replay(projection, position, head, apply, report)
            if reached == position:
                break  # the rest was deleted from the table: verify will say so
            position = reached
        return position

    @contextlib.asynccontextmanager
    async def _shadow(self, projection: Projection) -> AsyncIterator[asyncpg.Connection]:
        """A connection holding the projection's rebuild lock, whose
        ``search_path`` finds the projection's tables in a new, empty schema
        of their own first (and everything else in the store's schema). The
        schema is dropped on the way out: after the swap it is empty, after a
        failure it holds the abandoned tables."""
        main, name = self.store.schema, projection.name
        shadow = shadow_schema(main, name)
        conn = await connect(self.dsn, f"{quote_ident(shadow)}, {quote_ident(main)}")
        try:
            await self._acquire(conn, f"mentorflow.rebuild.{main}.{name}", wait=True)
            await conn.execute(ENSURE_STATE, name)
            async with conn.transaction():
                await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(shadow)} CASCADE")
                await conn.execute(f"CREATE SCHEMA {quote_ident(shadow)}")
                for table in projection.tables:  # only the primary keys: see build_indexes
                    serving = f"{quote_ident(main)}.{quote_ident(table)}"
                    new = f"{quote_ident(shadow)}.{quote_ident(table)}"
                    await conn.execute(
                        f"CREATE TABLE {new} (LIKE {serving} INCLUDING ALL EXCLUDING INDEXES)"
                    )
                    for key in await conn.fetch(PRIMARY_KEYS, serving):
                        await conn.execute(
                            f"ALTER TABLE {new} ADD CONSTRAINT {quote_ident(key['name'])}"
                            f" {key['definition']}"
                        )
            try:
                yield conn
            finally:
                if not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(shadow)} CASCADE")
            await conn.close(timeout=2)
        finally:
            if not conn.is_closed():
                conn.terminate()

    async def _replay(
        self,
        projection: Projection,
        position: int,
        until: int,
        apply: Apply,
        report: Callable[[int], None],
    ) -> int:
        """Apply the log after ``position`` up to ``until`` (reading ahead
        while writing); returns the last position applied."""
        queue: asyncio.Queue[list[ProjectedEvent]] = asyncio.Queue(maxsize=2)
        reader = asyncio.create_task(self._read_until(projection, position, until, queue))
        try:
            while True:
                events = await self._next_batch(queue, reader)
                if events is None:
                    continue
                if not events:
                    return position
                try:
                    await self._apply_isolating(projection, events, apply)
                except EventFailed as failed:
                    raise RebuildFailed(projection.name, failed.position, failed.error) from None
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if database.is_connection_error(exc):
                        raise
                    raise RebuildFailed(projection.name, None, exc) from exc
                position = events[-1].position
                report(position)
        finally:
            await cancel_and_wait(reader)

    async def _swap(
        self, conn: asyncpg.Connection, projection: Projection, generation: int, position: int
    ) -> int:
        """Apply what the log gained since the replay, and swap the new
        tables in, in one transaction that holds the state row: a worker's
        batch in flight commits before it, the next sees the new generation."""
        name, main = projection.name, self.store.schema
        checkpoint = tracking_name(name, generation)
        async with conn.transaction():
            await conn.fetchval(LOCK_STATE, name)
            head = await self.store.max_position()
            while position < head:
                records = await self.store.read_log(position, self.batch_size, until=head)
                if not records:
                    break
                events = self._projected(projection, records)

                async def apply(batch: Sequence[ProjectedEvent]) -> None:
                    async with conn.transaction():  # a savepoint
                        await self._apply(conn, projection, checkpoint, batch)

                try:
                    await self._apply_isolating(projection, events, apply)
                except EventFailed as failed:
                    raise RebuildFailed(name, failed.position, failed.error) from None
                except (GenerationChanged, asyncio.CancelledError):
                    raise
                except Exception as exc:
                    if database.is_connection_error(exc):
                        raise
                    raise RebuildFailed(name, None, exc) from exc
                position = records[-1].position
            for table in projection.tables:
                await swap_table(conn, table, shadow_schema(main, name), main)
            await conn.execute(SWAPPED, name, generation)
        return position

    async def _last_stored_position(self) -> int:
        """The log's last position that still holds an event: the end of a
        replay (an event deleted from the table would leave the checkpoint
        short of the last position handed out, and a rebuild waiting forever)."""
        last, span = await self.store.max_position(), 64
        while last > 0:
            records = await self.store.read_log(max(0, last - span), span, until=last)
            if records:
                position: int = records[-1].position
                return position
            last, span = last - span, span * 2
        return 0


async def build_indexes(
    conn: asyncpg.Connection, tables: Sequence[str], main: str, shadow: str
) -> None:
    """Give the new generation's tables the serving tables' other indexes and
    unique constraints, under the same names. A rebuild creates its tables with
    their primary keys only (what its upserts and lookups use), loads them,
    then builds the rest here: one sort per index instead of every index
    maintained row by row during the load."""
    for table in tables:
        new = f"{quote_ident(shadow)}.{quote_ident(table)}"
        serving = f"{quote_ident(main)}.{quote_ident(table)}"
        for index in await conn.fetch(SECONDARY_INDEXES, serving):
            if index["constraint_name"] is not None:
                await conn.execute(
                    f"ALTER TABLE {new} ADD CONSTRAINT {quote_ident(index['constraint_name'])}"
                    f" {index['constraint_definition']}"
                )
            else:
                unique = "UNIQUE " if index["is_unique"] else ""
                await conn.execute(
                    f"CREATE {unique}INDEX {quote_ident(index['name'])} ON {new}"
                    f" USING {index['definition']}"
                )


async def swap_table(conn: asyncpg.Connection, table: str, shadow: str, main: str) -> None:
    """Replace ``main.table`` by ``shadow.table`` (in the caller's
    transaction), giving the new table's indexes the old ones' names, so the
    schema looks as its migrations made it."""
    serving = f"{quote_ident(main)}.{quote_ident(table)}"
    old = {(r["is_unique"], r["definition"]): r["name"] for r in await conn.fetch(INDEXES, serving)}
    await conn.execute(f"DROP TABLE {serving}")
    await conn.execute(
        f"ALTER TABLE {quote_ident(shadow)}.{quote_ident(table)} SET SCHEMA {quote_ident(main)}"
    )
    renames = [
        (r["name"], old[key])
        for r in await conn.fetch(INDEXES, serving)
        if (key := (r["is_unique"], r["definition"])) in old and old[key] != r["name"]
    ]
    for index, (current, _) in enumerate(renames):  # two steps: no name is ever taken twice
        await conn.execute(
            f"ALTER INDEX {quote_ident(main)}.{quote_ident(current)}"
            f" RENAME TO {quote_ident(f'mf_swap_{index}')}"
        )
    for index, (_, wanted) in enumerate(renames):
        await conn.execute(
            f"ALTER INDEX {quote_ident(main)}.{quote_ident(f'mf_swap_{index}')}"
            f" RENAME TO {quote_ident(wanted)}"
        )

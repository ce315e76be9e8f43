"""Leadership: which process runs a projection. Each projection has a
PostgreSQL advisory lock held on a dedicated connection; its holder runs the
worker, and a dead holder's connection takes the lock with it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg

from service.projection_runner.running import Running
from service.projection_runner.state import TRY_LOCK, UNLOCK, Worker
from service.store.database import connect

log = logging.getLogger("service.projection_runner")


@contextlib.asynccontextmanager
async def locked_connection(
    dsn: str, schema: str, key: str, *, wait: bool, retry_every: float
) -> AsyncIterator[asyncpg.Connection | None]:
    """A dedicated connection holding the advisory lock ``key`` (None when
    ``wait`` is false and another process holds it). Closing the connection
    releases the lock, so a dead holder releases it too. The lease every
    one-at-a-time worker runs under (each projection's, the risk worker's)."""
    conn = await connect(dsn, schema)
    try:
        locked = await acquire(conn, key, wait=wait, retry_every=retry_every)
        yield conn if locked else None
        if locked:
            await conn.fetchval(UNLOCK, key)
        await conn.close(timeout=2)
    finally:
        if not conn.is_closed():
            conn.terminate()  # a failure or cancellation: drop it, the server releases the lock


async def acquire(conn: asyncpg.Connection, key: str, *, wait: bool, retry_every: float) -> bool:
    """Try the lock; with ``wait``, until it is free (a standby process)."""
    while not await conn.fetchval(TRY_LOCK, key):
        if not wait:
            return False
        await asyncio.sleep(retry_every)
    return True


class Leadership(Running):
    """Competing for a projection's lock, and running its worker while holding it."""

    # --- the worker ------------------------------------------------------------------------

    async def _lead(self, worker: Worker) -> None:
        """One run of a worker (a supervised task): wait for the lock, then
        follow the log until cancelled or a failure ends the run."""
        name = worker.projection.name
        try:
            async with self._locked_connection(name, wait=True) as conn:
                assert conn is not None
                worker.conn = conn
                worker.leading = True
                self.metrics.leader.labels(name).set(1)
                log.info("projection %s: this process runs the worker", name)
                await self._project(conn, worker)
        finally:
            worker.conn = None
            worker.leading = False
            self.metrics.leader.labels(name).set(0)

    async def _release(self, worker: Worker) -> None:
        """After a failed run: give back the projection's lock (dropping the
        connection releases it; normally the run's own exit already did)."""
        conn, worker.conn = worker.conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    @contextlib.asynccontextmanager
    async def _locked_connection(
        self, name: str, *, wait: bool
    ) -> AsyncIterator[asyncpg.Connection | None]:
        """A dedicated connection holding the projection's advisory lock (None
        when ``wait`` is false and another process holds it). Closing the
        connection releases the lock, so a dead holder releases it too."""
        key = f"mentorflow.projection.{self.store.schema}.{name}"
        async with locked_connection(
            self.dsn, self.store.schema, key, wait=wait, retry_every=self.takeover_interval
        ) as conn:
            yield conn

    async def _acquire(self, conn: asyncpg.Connection, key: str, *, wait: bool) -> bool:
        return await acquire(conn, key, wait=wait, retry_every=self.takeover_interval)

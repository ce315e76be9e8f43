"""Running the projections: one worker per projection across all processes.

For each projection, every process runs a worker task (under the process's
:class:`~service.platform.supervisor.Supervisor`) that competes for a PostgreSQL
advisory lock on a dedicated connection. The winner follows the global log
from the projection's checkpoint and commits, per batch, the projection's
rows and its checkpoint in one transaction *on that same connection*: if the
holder dies, its connection (and so its lock and any uncommitted batch) goes
with it, and another process takes over within ``takeover_interval``. No
write can ever come from a worker that lost the lock.

Checkpoints are tracking records of the event store, moved forward with
``EventStore.advance_tracking``. Checkpoints only move forward, so each
projection has a *generation* (table ``projection_state``, migrations 0010
and 0040) and its checkpoint is named ``projection.<name>.<generation>``.

A rebuild is blue/green: it takes a new generation number, builds that
generation's tables in a schema of its own beside the serving ones (same
table names, found first on the rebuild connection's ``search_path``),
replays the log into them, and once it has caught up with the log it swaps
them in: one transaction locks the projection's state row (every worker
batch reads it ``FOR SHARE`` first, so the swap waits for a batch in flight
and fences off the next), applies the last events, drops the serving tables,
moves the new ones into place, and makes their generation the serving one.
The running worker sees the new generation and goes on from its checkpoint.
Until the swap, reads are served from the old tables, which the running
worker keeps up to date; a rebuild that fails (or is stopped) drops its
schema and leaves them as they were. The webhook outbox is history, not a
view: it is never rebuilt (a rebuild must never send a webhook again).

When a handler fails on a batch, the worker counts the failure and ends;
the supervisor starts it again after a back-off, and the new run commits the
failed batch's events one at a time to find the event that fails
(committing those before it). A failing event is logged with the projection
and the position, counted, and recorded in ``projection_state`` (so
``/readyz`` in any process can name it), and the run ends again: the event is
retried after each back-off. The record is cleared when the projection
commits that position. Other projections go on meanwhile.

A running worker reads the log through the store's subscription
(LISTEN/NOTIFY, polling as the fallback); a rebuild reads it in whole batches
up to the last position it was asked for. Either way a reader task reads and
prepares (decodes, formats) events while the worker writes the previous
batch, so reading, preparing and writing overlap.

Lag (last position - checkpoint) is exported per projection as Prometheus
gauges; ``wait_until_projected`` gives readers read-your-writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge

from domain import Relationship
from projections import ProjectedEvent, Projection, all_projections
from service.codec import mapper_for
from service.platform.settings import Settings
from service.platform.supervisor import Supervisor
from service.platform.tasks import cancel_and_wait
from service.relationships import RelationshipRepository
from service.store import database
from service.store.database import connect, quote_ident, resolve_database_url
from service.store.eventstore import EventStore
from service.store.records import StoredRecord, Tracking

log = logging.getLogger(__name__)

_ENSURE_STATE = "INSERT INTO projection_state (name) VALUES ($1) ON CONFLICT (name) DO NOTHING"
_GENERATION = "SELECT generation FROM projection_state WHERE name = $1"
_STATE = "SELECT generation, failed_position FROM projection_state WHERE name = $1"
_FENCE = "SELECT generation FROM projection_state WHERE name = $1 FOR SHARE"
_LOCK_STATE = "SELECT generation FROM projection_state WHERE name = $1 FOR UPDATE"
_NEW_GENERATION = (
    "UPDATE projection_state"
    " SET last_generation = greatest(coalesce(last_generation, generation), generation) + 1"
    " WHERE name = $1 RETURNING last_generation"
)
_SWAPPED = (
    "UPDATE projection_state SET generation = $2, rebuilt_at = clock_timestamp(),"
    " failed_position = NULL, failed_error = NULL, failed_at = NULL WHERE name = $1"
)
_RECORD_FAILURE = (
    "UPDATE projection_state SET failed_position = $2, failed_error = $3,"
    " failed_at = CASE WHEN failed_position = $2 THEN failed_at ELSE clock_timestamp() END"
    " WHERE name = $1"
)
"""``failed_at`` says since when the projection is stuck at that position."""
_CLEAR_FAILURE = (
    "UPDATE projection_state SET failed_position = NULL, failed_error = NULL, failed_at = NULL"
    " WHERE name = $1 AND failed_position <= $2"
)
_FAILURES = (
    "SELECT name, failed_position, failed_error, failed_at FROM projection_state"
    " WHERE failed_position IS NOT NULL AND name = ANY($1::text[]) ORDER BY name"
)
_INDEXES = (
    "SELECT i.relname AS name, x.indisunique AS is_unique,"
    " regexp_replace(pg_get_indexdef(i.oid), '^.* USING ', '') AS definition"
    " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
    " WHERE x.indrelid = to_regclass($1) ORDER BY i.relname"
)
_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtext($1))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtext($1))"

MAX_ERROR_TEXT = 1000
"""Of a failure's error message, what ``projection_state`` keeps."""


def tracking_name(name: str, generation: int) -> str:
    """The checkpoint of one generation of a projection."""
    return f"projection.{name}.{generation}"


def shadow_schema(schema: str, name: str) -> str:
    """The schema a rebuild of projection ``name`` builds its tables in
    (deterministic, so a rebuild that died leaves one the next one drops)."""
    return "mf_rebuild_" + hashlib.sha256(f"{schema}.{name}".encode()).hexdigest()[:20]


class GenerationChanged(Exception):
    """A rebuild swapped in a new generation: the worker restarts from its checkpoint."""


class EventFailed(Exception):
    """A projection's handler failed on the event at ``position``."""

    def __init__(self, name: str, position: int, error: BaseException) -> None:
        self.name = name
        self.position = position
        self.error = error
        super().__init__(f"projection {name} failed at position {position}: {describe(error)}")


class BatchFailed(Exception):
    """A projection's handler failed on a batch of several events."""

    def __init__(self, name: str, batch: Sequence[ProjectedEvent], error: BaseException) -> None:
        self.name = name
        self.first = batch[0].position
        self.last = batch[-1].position
        self.error = error
        super().__init__(
            f"projection {name} failed on positions {self.first} to {self.last}: {describe(error)}"
        )


class RebuildFailed(Exception):
    """A rebuild stopped before its swap: the serving tables are unchanged."""

    def __init__(self, name: str, position: int | None, error: BaseException) -> None:
        self.name = name
        self.position = position
        self.error = error
        where = "" if position is None else f" at position {position}"
        super().__init__(
            f"rebuild of {name} failed{where}: {describe(error)}; the serving tables are unchanged"
        )


def describe(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 1] + "…"


@dataclass(frozen=True)
class ProjectionFailure:
    """A projection stuck at an event (as recorded in ``projection_state``)."""

    projection: str
    position: int
    error: str
    since: datetime


@dataclass(frozen=True)
class RebuildProgress:
    """Where a rebuild is: the new generation's checkpoint against the log's
    last position when the rebuild started."""

    name: str
    position: int
    target: int
    elapsed_s: float

    @property
    def fraction(self) -> float:
        return 1.0 if self.target <= 0 else min(1.0, self.position / self.target)

    @property
    def events_per_s(self) -> float:
        return self.position / self.elapsed_s if self.elapsed_s > 0 else 0.0


ProgressCallback = Callable[[RebuildProgress], None]


@dataclass(frozen=True)
class RebuildReport:
    name: str
    generation: int
    events: int
    """Positions replayed (the log's last position when the rebuild started)."""
    seconds: float
    position: int
    """The new generation's checkpoint when it was swapped in."""


class ProjectionMetrics:
    """The runner's Prometheus metrics, in the registry it is given (a
    registry per application, so several can live in one process)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        label = ("projection",)
        self.lag = Gauge(
            "mentorflow_projection_lag_events",
            "Events in the global log not yet projected (last position - checkpoint).",
            label,
            registry=registry,
        )
        self.checkpoint = Gauge(
            "mentorflow_projection_checkpoint_position",
            "Last global position the projection has committed.",
            label,
            registry=registry,
        )
        self.leader = Gauge(
            "mentorflow_projection_leader",
            "1 while this process runs the projection's worker (holds its lock).",
            label,
            registry=registry,
        )
        self.events = Counter(
            "mentorflow_projection_events",
            "Events applied by this process's worker.",
            label,
            registry=registry,
        )
        self.failures = Counter(
            "mentorflow_projection_failures",
            "Batches of this process's worker that failed (then retried after a back-off).",
            label,
            registry=registry,
        )
        self.stuck = Gauge(
            "mentorflow_projection_stuck_position",
            "Position of the event the projection fails on, whichever process runs it"
            " (0 when it is not stuck).",
            label,
            registry=registry,
        )


@dataclass
class _Worker:
    """One projection's state in this process."""

    projection: Projection
    leading: bool = False
    conn: asyncpg.Connection | None = None
    """The lock holder's connection while this process runs the worker."""
    stuck: int | None = None
    """The position recorded as failing (cleared once committed)."""
    careful_until: int | None = None
    """After a batch failed: its last position, up to which events are then
    committed one at a time, to find the one that fails."""
    committed: tuple[int, int] | None = None
    """(generation, position) of the last batch this process committed."""
    progressed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set (then replaced) after every commit, to wake read-your-writes waiters."""

    def announce(self, generation: int, position: int) -> None:
        self.committed = (generation, position)
        self.progressed.set()
        self.progressed = asyncio.Event()


Apply = Callable[[Sequence[ProjectedEvent]], Awaitable[None]]
"""Commits a batch (rows and checkpoint) in a transaction of its own."""


class ProjectionRunner:
    """Start with ``await runner.start(supervisor)``, stop with ``await runner.stop()``.

    ``dsn`` is the database URL the store was opened with (the worker locks
    live on dedicated connections, outside the store's pool);
    :meth:`for_settings` finds it from the settings.
    """

    def __init__(
        self,
        store: EventStore,
        dsn: str,
        decode: Callable[[StoredRecord], Relationship.Event],
        projections: Sequence[Projection] | None = None,
        *,
        batch_size: int = 1000,
        poll_interval: float = 1.0,
        takeover_interval: float = 1.0,
        metrics_interval: float = 5.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.store = store
        self.dsn = dsn
        self._decode = decode
        self.projections = list(all_projections() if projections is None else projections)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.takeover_interval = takeover_interval
        self.metrics_interval = metrics_interval
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = ProjectionMetrics(self.registry)
        self._workers = {p.name: _Worker(p) for p in self.projections}
        self._supervisor: Supervisor | None = None
        self._owns_supervisor = False
        self._spawned: list[str] = []

    @classmethod
    async def for_settings(
        cls, settings: Settings, store: EventStore, **options: Any
    ) -> ProjectionRunner:
        """A runner for the service's store and codec (``options`` as ``__init__``)."""
        dsn = await asyncio.to_thread(resolve_database_url, settings)
        repository = RelationshipRepository(store, mapper_for(settings))
        return cls(store, dsn, lambda record: repository.decode(record).event, **options)

    @property
    def names(self) -> list[str]:
        return list(self._workers)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self, supervisor: Supervisor | None = None) -> None:
        """Run one worker per projection, and the metrics refresher, as tasks
        of ``supervisor`` (the process's; without one, a supervisor of the
        runner's own). The supervisor restarts a worker that failed, after a
        back-off, once its ``release`` has given back the projection's lock.
        Idempotent."""
        if self._spawned:
            return
        if supervisor is None:
            supervisor, self._owns_supervisor = Supervisor(), True
        self._supervisor = supervisor
        for worker in self._workers.values():
            name = f"projection-{worker.projection.name}"
            supervisor.spawn(
                name,
                functools.partial(self._lead, worker),
                release=functools.partial(self._release, worker),
            )
            self._spawned.append(name)
        supervisor.spawn("projection-metrics", self._publish_metrics)
        self._spawned.append("projection-metrics")

    async def stop(self) -> None:
        """Stop every worker; a batch in flight is rolled back (it will be
        processed again by whoever runs the projection next)."""
        supervisor, spawned = self._supervisor, self._spawned
        self._spawned = []
        if supervisor is not None:
            for name in spawned:
                await supervisor.cancel(name)
            if self._owns_supervisor:
                await supervisor.stop()
        self._supervisor, self._owns_supervisor = None, False

    @property
    def running(self) -> bool:
        return bool(self._spawned)

    def is_leader(self, name: str) -> bool:
        """Whether this process runs the projection's worker now."""
        return self._worker(name).leading

    # --- checkpoints, lag, failures, read-your-writes -----------------------------------------

    async def checkpoint(self, name: str) -> int:
        """The last position the projection's current generation has committed."""
        self._worker(name)
        generation = await self.store.with_connection(lambda c: c.fetchval(_GENERATION, name))
        position = await self.store.tracking_position(tracking_name(name, generation or 1))
        return position or 0

    async def lag(self) -> dict[str, int]:
        """Per projection: events in the log not yet projected."""
        last = await self.store.max_position()
        return {name: max(0, last - await self.checkpoint(name)) for name in self._workers}

    async def failures(self) -> list[ProjectionFailure]:
        """The projections stuck at an event, whichever process runs them."""
        rows = await self.store.with_connection(lambda c: c.fetch(_FAILURES, self.names))
        return [
            ProjectionFailure(r["name"], r["failed_position"], r["failed_error"], r["failed_at"])
            for r in rows
        ]

    async def refresh_metrics(self) -> dict[str, int]:
        """Update the lag, checkpoint and stuck-position gauges from the
        database (call it from the ``/metrics`` handler for exact figures; a
        background task also refreshes them every ``metrics_interval`` seconds)."""
        last = await self.store.max_position()
        lags: dict[str, int] = {}
        for name in self._workers:
            position = await self.checkpoint(name)
            lags[name] = max(0, last - position)
            self.metrics.lag.labels(name).set(lags[name])
            self.metrics.checkpoint.labels(name).set(position)
        stuck = {failure.projection: failure.position for failure in await self.failures()}
        for name in self._workers:
            self.metrics.stuck.labels(name).set(stuck.get(name, 0))
        return lags

    async def wait_until_projected(
        self, name: str | None, position: int, timeout: float = 5.0
    ) -> bool:
        """Wait until projection ``name`` (every projection when None) has
        committed ``position``: read-your-writes after an append. False on
        timeout. Cheap when this process runs the worker (woken by its commits,
        no query when already there); otherwise polls the checkpoint."""
        names = self.names if name is None else [name]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for each in names:
            if not await self._wait_one(each, position, deadline):
                return False
        return True

    async def _wait_one(self, name: str, position: int, deadline: float) -> bool:
        worker = self._worker(name)
        loop = asyncio.get_running_loop()
        delay = 0.005
        while True:
            if worker.committed is not None and worker.committed[1] >= position:
                return True
            woken = worker.progressed
            if await self.checkpoint(name) >= position:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(delay, remaining)):
                    await woken.wait()
            delay = min(delay * 2, 0.2)

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
            generation: int = await conn.fetchval(_NEW_GENERATION, name)
            log.info(
                "projection %s: rebuilding beside the serving tables as generation %d",
                name,
                generation,
            )
            checkpoint = tracking_name(name, generation)

            async def apply(events: Sequence[ProjectedEvent]) -> None:
                async with conn.transaction():
                    await self._apply(conn, projection, checkpoint, events)

            position = await self._replay(projection, 0, target, apply, report)
            while (head := await self.store.max_position()) - position > self.batch_size:
                reached = await self._replay(projection, position, head, apply, report)
                if reached == position:
                    break  # the rest was deleted from the table: verify will say so
                position = reached
            position = await self._swap(conn, projection, generation, position)
        report(max(target, position))
        log.info(
            "projection %s: generation %d swapped in at position %d", name, generation, position
        )
        return RebuildReport(name, generation, target, time.perf_counter() - started, position)

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
            await conn.execute(_ENSURE_STATE, name)
            async with conn.transaction():
                await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(shadow)} CASCADE")
                await conn.execute(f"CREATE SCHEMA {quote_ident(shadow)}")
                for table in projection.tables:
                    await conn.execute(
                        f"CREATE TABLE {quote_ident(shadow)}.{quote_ident(table)}"
                        f" (LIKE {quote_ident(main)}.{quote_ident(table)} INCLUDING ALL)"
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
            await conn.fetchval(_LOCK_STATE, name)
            head = await self.store.max_position()
            while position < head:
                records = await self.store.read_log(position, self.batch_size, until=head)
                if not records:
                    break
                events = [self._prepared(projection, record) for record in records]

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
                await _swap_table(conn, table, shadow_schema(main, name), main)
            await conn.execute(_SWAPPED, name, generation)
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

    # --- the worker ------------------------------------------------------------------------

    async def _lead(self, worker: _Worker) -> None:
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

    async def _release(self, worker: _Worker) -> None:
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
        conn = await connect(self.dsn, self.store.schema)
        try:
            locked = await self._acquire(conn, key, wait=wait)
            yield conn if locked else None
            if locked:
                await conn.fetchval(_UNLOCK, key)
            await conn.close(timeout=2)
        finally:
            if not conn.is_closed():
                conn.terminate()  # a failure or cancellation: drop it, the server releases the lock

    async def _acquire(self, conn: asyncpg.Connection, key: str, *, wait: bool) -> bool:
        """Try the lock; with ``wait``, until it is free (a standby process)."""
        while not await conn.fetchval(_TRY_LOCK, key):
            if not wait:
                return False
            await asyncio.sleep(self.takeover_interval)
        return True

    async def _project(self, conn: asyncpg.Connection, worker: _Worker) -> None:
        """Follow the log for ever from the checkpoint of the serving
        generation, starting again whenever a rebuild swaps in a new one."""
        name = worker.projection.name
        await conn.execute(_ENSURE_STATE, name)
        while True:
            state = await conn.fetchrow(_STATE, name)
            generation: int = state["generation"]
            worker.stuck = state["failed_position"]
            start = await self.store.tracking_position(tracking_name(name, generation)) or 0
            worker.announce(generation, start)
            try:
                await self._follow(conn, worker, generation, start)
            except GenerationChanged:
                log.info("projection %s: a rebuild swapped in a new generation", name)

    async def _follow(
        self, conn: asyncpg.Connection, worker: _Worker, generation: int, position: int
    ) -> None:
        """Commit batches from ``position`` for ever."""
        projection = worker.projection
        queue: asyncio.Queue[list[ProjectedEvent]] = asyncio.Queue(maxsize=2 * self.batch_size)
        reader = asyncio.create_task(self._read_live(projection, position, queue))

        async def apply(events: Sequence[ProjectedEvent]) -> None:
            await self._commit(conn, worker, generation, events)

        try:
            while True:
                events = await self._next_batch(queue, reader)
                if events is None:
                    if await conn.fetchval(_GENERATION, projection.name) != generation:
                        raise GenerationChanged
                    continue
                careful = worker.careful_until is not None
                try:
                    await self._apply_batch(
                        projection, events, apply, one_by_one=careful, count=True
                    )
                except BatchFailed as failed:
                    worker.careful_until = failed.last
                    log.warning(
                        "projection %s: a batch (positions %d to %d) failed: %s; its events"
                        " are tried one at a time after a back-off",
                        projection.name,
                        failed.first,
                        failed.last,
                        describe(failed.error),
                    )
                    raise
                except EventFailed as failed:
                    await self._record_failure(conn, worker, failed)
                    raise
                if careful and events[-1].position >= (worker.careful_until or 0):
                    worker.careful_until = None
        finally:
            await cancel_and_wait(reader)

    async def _apply_batch(
        self,
        projection: Projection,
        events: Sequence[ProjectedEvent],
        apply: Apply,
        *,
        one_by_one: bool = False,
        count: bool = False,
    ) -> None:
        """Commit ``events`` as one batch, or ``one_by_one`` (each event in a
        transaction of its own, to find the one that fails: those before it
        are kept). Raises :class:`EventFailed` naming the event when a single
        event fails, :class:`BatchFailed` when a batch of several does; errors
        of the connection go through as they are. ``count`` counts failures."""
        batches = [[event] for event in events] if one_by_one else [events]
        for batch in batches:
            try:
                await apply(batch)
            except (GenerationChanged, asyncio.CancelledError):
                raise
            except Exception as exc:
                if database.is_connection_error(exc) or isinstance(exc, asyncpg.InterfaceError):
                    raise
                if count:
                    self.metrics.failures.labels(projection.name).inc()
                if len(batch) == 1:
                    raise EventFailed(projection.name, batch[0].position, exc) from exc
                raise BatchFailed(projection.name, batch, exc) from exc

    async def _apply_isolating(
        self, projection: Projection, events: Sequence[ProjectedEvent], apply: Apply
    ) -> None:
        """Commit ``events`` as one batch; when that fails, at once one event
        at a time, so that :class:`EventFailed` names the event (a rebuild's
        way: it has no back-off to wait for)."""
        try:
            await self._apply_batch(projection, events, apply)
        except BatchFailed:
            await self._apply_batch(projection, events, apply, one_by_one=True)

    async def _record_failure(
        self, conn: asyncpg.Connection, worker: _Worker, failed: EventFailed
    ) -> None:
        """Say it loudly: a log line naming the projection and the position,
        the stuck-position gauge, and the record ``/readyz`` reads."""
        name = failed.name
        log.error(
            "projection %s failed at position %d: %s (other projections go on;"
            " retrying after a back-off)",
            name,
            failed.position,
            describe(failed.error),
            extra={"projection": name, "position": failed.position},
        )
        self.metrics.stuck.labels(name).set(failed.position)
        worker.stuck = failed.position
        try:
            await conn.execute(_RECORD_FAILURE, name, failed.position, describe(failed.error))
        except Exception as exc:  # the database may be away: the log line has it
            log.warning("projection %s: the failure could not be recorded: %s", name, exc)

    async def _read_live(
        self, projection: Projection, position: int, queue: asyncio.Queue[list[ProjectedEvent]]
    ) -> None:
        """The reader task of a running worker: follows the store's subscription
        (woken by NOTIFY, polling as the fallback). It prepares events and fills
        the queue while the worker writes, so reading, preparing and writing
        overlap; it waits when the queue is full."""
        async with self.store.subscribe(after=position, poll_interval=self.poll_interval) as sub:
            async for record in sub:
                await queue.put([self._prepared(projection, record)])

    async def _read_until(
        self,
        projection: Projection,
        position: int,
        until: int,
        queue: asyncio.Queue[list[ProjectedEvent]],
    ) -> None:
        """The reader task of a rebuild: the log up to ``until`` in whole
        batches (no waiting for appends), then an empty batch to say "done"."""
        while position < until:
            records = await self.store.read_log(position, self.batch_size, until=until)
            if not records:
                break  # the rest was deleted from the table: verify will say so
            await queue.put([self._prepared(projection, record) for record in records])
            position = records[-1].position
        await queue.put([])

    def _prepared(self, projection: Projection, record: StoredRecord) -> ProjectedEvent:
        event = projected_event(record, self._decode)
        try:
            event.prepared = projection.prepare(event)
        except Exception:  # handle() meets it again, at this event's position
            event.prepared = None
        return event

    async def _next_batch(
        self, queue: asyncio.Queue[list[ProjectedEvent]], reader: asyncio.Task[None]
    ) -> list[ProjectedEvent] | None:
        """What the reader has queued, about ``batch_size`` events (an empty
        list when a bounded reader is done); None after ``poll_interval`` with
        nothing (the caller then checks its generation)."""
        try:
            # Not asyncio.wait_for: on 3.11 it can swallow a cancellation that
            # arrives with a batch, and this worker would then never stop.
            async with asyncio.timeout(self.poll_interval):
                events = await queue.get()
        except TimeoutError:
            if reader.done():
                reader.result()  # the reader failed: raise its error
                raise RuntimeError("the log reader stopped") from None
            return None
        while events and len(events) < self.batch_size and not queue.empty():
            more = queue.get_nowait()
            if not more:
                queue.put_nowait(more)  # "done" comes after this batch
                break
            events += more
        return events

    async def _commit(
        self,
        conn: asyncpg.Connection,
        worker: _Worker,
        generation: int,
        events: Sequence[ProjectedEvent],
    ) -> None:
        """Rows and checkpoint in one transaction: applied exactly once."""
        projection = worker.projection
        position = events[-1].position
        async with conn.transaction():
            if await conn.fetchval(_FENCE, projection.name) != generation:
                raise GenerationChanged
            await self._apply(conn, projection, tracking_name(projection.name, generation), events)
            if worker.stuck is not None and position >= worker.stuck:
                await conn.execute(_CLEAR_FAILURE, projection.name, position)
        if worker.stuck is not None and position >= worker.stuck:
            worker.stuck = None
            self.metrics.stuck.labels(projection.name).set(0)
            log.info("projection %s: moved past position %d", projection.name, position)
        worker.announce(generation, position)
        self.metrics.events.labels(projection.name).inc(len(events))
        self.metrics.checkpoint.labels(projection.name).set(position)

    @staticmethod
    async def _apply(
        conn: asyncpg.Connection,
        projection: Projection,
        checkpoint: str,
        events: Sequence[ProjectedEvent],
    ) -> None:
        """The batch's rows and the checkpoint (in the caller's transaction)."""
        await projection.handle(conn, events)
        await EventStore.advance_tracking(conn, Tracking(checkpoint, events[-1].position))

    async def _publish_metrics(self) -> None:
        while True:
            try:
                await self.refresh_metrics()
            except Exception as exc:  # the database may be away: keep the last figures
                log.debug("projection metrics not refreshed: %s", exc)
            await asyncio.sleep(self.metrics_interval)

    def _worker(self, name: str) -> _Worker:
        try:
            return self._workers[name]
        except KeyError:
            raise KeyError(f"no projection {name!r}; known: {', '.join(self._workers)}") from None


async def _swap_table(conn: asyncpg.Connection, table: str, shadow: str, main: str) -> None:
    """Replace ``main.table`` by ``shadow.table`` (in the caller's
    transaction), giving the new table's indexes the old ones' names, so the
    schema looks as its migrations made it."""
    serving = f"{quote_ident(main)}.{quote_ident(table)}"
    old = {
        (r["is_unique"], r["definition"]): r["name"] for r in await conn.fetch(_INDEXES, serving)
    }
    await conn.execute(f"DROP TABLE {serving}")
    await conn.execute(
        f"ALTER TABLE {quote_ident(shadow)}.{quote_ident(table)} SET SCHEMA {quote_ident(main)}"
    )
    renames = [
        (r["name"], old[key])
        for r in await conn.fetch(_INDEXES, serving)
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


def projected_event(
    record: StoredRecord, decode: Callable[[StoredRecord], Relationship.Event]
) -> ProjectedEvent:
    """A stored record as projections see it (for readers outside the runner)."""
    return ProjectedEvent(
        position=record.position,
        relationship_id=record.stream_id,
        version=record.version,
        event_id=record.event_id,
        topic=record.topic,
        metadata=record.metadata,
        recorded_at=record.recorded_at,
        chain_hash=record.chain_hash,
        decode=functools.partial(decode, record),
    )

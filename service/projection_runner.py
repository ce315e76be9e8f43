"""Running the projections: one worker per projection across all processes.

For each projection, every process runs a supervisor task that competes for a
PostgreSQL advisory lock on a dedicated connection. The winner follows the
global log from the projection's checkpoint and commits, per batch, the
projection's rows and its checkpoint in one transaction *on that same
connection*: if the holder dies, its connection (and so its lock and any
uncommitted batch) goes with it, and another process takes over within
``takeover_interval``. No write can ever come from a worker that lost the lock.

Checkpoints are tracking records of the event store, moved forward with
``EventStore.advance_tracking``. A rebuild must start again from position 0,
but checkpoints only move forward, so each projection has a *generation*
(table ``projection_state``, migration 0010) and its checkpoint is named
``projection.<name>.<generation>``. A rebuild bumps the generation and empties
the tables in one transaction; every batch first reads its generation row
``FOR SHARE``, so a batch racing a rebuild (in this process or another) either
commits before it, or sees the new generation and rolls back. A rebuild can
therefore run while the service runs: whichever process holds the lock
replays the log, and the caller watches the new checkpoint advance.

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
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge

from domain import Relationship
from projections import ProjectedEvent, Projection, all_projections
from service.codec import mapper_for
from service.relationships import RelationshipRepository
from service.settings import Settings
from service.store.database import connect, resolve_database_url
from service.store.eventstore import EventStore
from service.store.records import StoredRecord, Tracking
from service.tasks import cancel_and_wait

log = logging.getLogger(__name__)

_ENSURE_STATE = "INSERT INTO projection_state (name) VALUES ($1) ON CONFLICT (name) DO NOTHING"
_GENERATION = "SELECT generation FROM projection_state WHERE name = $1"
_FENCE = "SELECT generation FROM projection_state WHERE name = $1 FOR SHARE"
_BUMP = (
    "INSERT INTO projection_state AS s (name, generation, rebuilt_at)"
    " VALUES ($1, 1, clock_timestamp())"
    " ON CONFLICT (name) DO UPDATE"
    " SET generation = s.generation + 1, rebuilt_at = EXCLUDED.rebuilt_at"
    " RETURNING generation"
)
_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtext($1))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtext($1))"

RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 30.0


def tracking_name(name: str, generation: int) -> str:
    """The checkpoint of one generation of a projection."""
    return f"projection.{name}.{generation}"


class GenerationChanged(Exception):
    """A rebuild started a new generation: the worker restarts from its checkpoint."""


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
    replayed_here: bool
    """False when another process held the worker lock and did the replay."""


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
            "Batches or connections of this process's worker that failed (then retried).",
            label,
            registry=registry,
        )


@dataclass
class _Worker:
    """One projection's state in this process."""

    projection: Projection
    task: asyncio.Task[None] | None = None
    leading: bool = False
    committed: tuple[int, int] | None = None
    """(generation, position) of the last batch this process committed."""
    progressed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set (then replaced) after every commit, to wake read-your-writes waiters."""

    def announce(self, generation: int, position: int) -> None:
        self.committed = (generation, position)
        self.progressed.set()
        self.progressed = asyncio.Event()


class ProjectionRunner:
    """Start with ``await runner.start()``, stop with ``await runner.stop()``.

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
        self._metrics_task: asyncio.Task[None] | None = None

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

    async def start(self) -> None:
        """Start one supervisor per projection (idempotent)."""
        for worker in self._workers.values():
            if worker.task is None:
                worker.task = asyncio.create_task(
                    self._supervise(worker), name=f"projection-{worker.projection.name}"
                )
        if self._metrics_task is None:
            self._metrics_task = asyncio.create_task(self._publish_metrics(), name="projection-lag")

    async def stop(self) -> None:
        """Stop every worker; a batch in flight is rolled back (it will be
        processed again by whoever runs the projection next)."""
        tasks = [w.task for w in self._workers.values() if w.task is not None]
        if self._metrics_task is not None:
            tasks.append(self._metrics_task)
        await cancel_and_wait(*tasks)
        for worker in self._workers.values():
            worker.task = None
        self._metrics_task = None

    @property
    def running(self) -> bool:
        return any(w.task is not None for w in self._workers.values())

    def is_leader(self, name: str) -> bool:
        """Whether this process runs the projection's worker now."""
        return self._worker(name).leading

    # --- checkpoints, lag, read-your-writes -----------------------------------------------

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

    async def refresh_metrics(self) -> dict[str, int]:
        """Update the lag and checkpoint gauges from the database (call it from
        the ``/metrics`` handler for exact figures; a background task also
        refreshes them every ``metrics_interval`` seconds)."""
        last = await self.store.max_position()
        lags: dict[str, int] = {}
        for name in self._workers:
            position = await self.checkpoint(name)
            lags[name] = max(0, last - position)
            self.metrics.lag.labels(name).set(lags[name])
            self.metrics.checkpoint.labels(name).set(position)
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

    # --- rebuilding ------------------------------------------------------------------------

    async def rebuild(
        self, name: str, progress: ProgressCallback | None = None, *, timeout: float | None = None
    ) -> RebuildReport:
        """Empty the projection's tables, start a new generation from position 0
        and return once it has caught up with the log as it was at the start.

        The replay runs wherever the projection's worker runs: here when this
        runner is started and leads it (or is not started and can take the
        lock), otherwise in the process that holds the lock, while this call
        reports progress. Raises TimeoutError after ``timeout`` seconds.
        """
        worker = self._worker(name)
        started = time.perf_counter()
        generation = await self._reset(worker.projection)
        worker.committed = None  # what this process committed before is gone
        target = await self._last_stored_position()

        def report(position: int) -> None:
            if progress is not None:
                progress(RebuildProgress(name, position, target, time.perf_counter() - started))

        replayed_here = False
        async with asyncio.timeout(timeout):
            if worker.task is not None:
                await self._watch(name, target, report)
                replayed_here = worker.leading
            else:
                async with self._locked_connection(name, wait=False) as conn:
                    if conn is None:
                        await self._watch(name, target, report)
                    else:
                        await self._project(conn, worker, until=target, on_batch=report)
                        replayed_here = True
        report(max(target, 0))
        return RebuildReport(name, generation, target, time.perf_counter() - started, replayed_here)

    async def _reset(self, projection: Projection) -> int:
        """New generation and empty tables, atomically. Waits for a batch in
        flight (it holds the generation row FOR SHARE), so none straddles it."""
        async with self.store.transaction() as conn:
            generation: int = await conn.fetchval(_BUMP, projection.name)
            await projection.clear(conn)
        log.info("projection %s: rebuilding as generation %d", projection.name, generation)
        return generation

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

    async def _watch(self, name: str, target: int, report: Callable[[int], None]) -> None:
        """Report another worker's progress until it reaches ``target``."""
        while True:
            position = await self.checkpoint(name)
            report(position)
            if position >= target:
                return
            await asyncio.sleep(0.1)

    # --- the worker ------------------------------------------------------------------------

    async def _supervise(self, worker: _Worker) -> None:
        """Compete for the lock, run the worker, and after any failure (a
        handler raising, the database going away) start again with back-off."""
        name = worker.projection.name
        delay = RETRY_INITIAL_S
        while True:
            try:
                async with self._locked_connection(name, wait=True) as conn:
                    assert conn is not None
                    worker.leading = True
                    self.metrics.leader.labels(name).set(1)
                    log.info("projection %s: this process runs the worker", name)
                    await self._project(conn, worker, until=None, on_batch=lambda _: None)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.metrics.failures.labels(name).inc()
                log.exception("projection %s failed; retrying in %.1f s", name, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            else:
                delay = RETRY_INITIAL_S
            finally:
                worker.leading = False
                self.metrics.leader.labels(name).set(0)

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

    async def _project(
        self,
        conn: asyncpg.Connection,
        worker: _Worker,
        *,
        until: int | None,
        on_batch: Callable[[int], None],
    ) -> None:
        """Follow the log (up to ``until``, or for ever) from the checkpoint of
        the current generation, starting again whenever the generation changes."""
        name = worker.projection.name
        await conn.execute(_ENSURE_STATE, name)
        while True:
            generation: int = await conn.fetchval(_GENERATION, name)
            start = await self.store.tracking_position(tracking_name(name, generation)) or 0
            worker.announce(generation, start)
            try:
                await self._follow(conn, worker, generation, start, until, on_batch)
                return
            except GenerationChanged:
                log.info("projection %s: new generation, starting again", name)

    async def _follow(
        self,
        conn: asyncpg.Connection,
        worker: _Worker,
        generation: int,
        position: int,
        until: int | None,
        on_batch: Callable[[int], None],
    ) -> None:
        """Commit batches from ``position``: for ever (``until`` None), or until
        the log up to ``until`` has been processed."""
        projection = worker.projection
        queue: asyncio.Queue[list[ProjectedEvent]] = asyncio.Queue(
            maxsize=2 if until is not None else 2 * self.batch_size
        )
        reader = asyncio.create_task(
            self._read_live(projection, position, queue)
            if until is None
            else self._read_until(projection, position, until, queue)
        )
        try:
            while True:
                events = await self._next_batch(queue, reader)
                if events is None:
                    if await conn.fetchval(_GENERATION, projection.name) != generation:
                        raise GenerationChanged
                    continue
                if not events:
                    return  # read up to `until`
                await self._commit(conn, projection, generation, events)
                position = events[-1].position
                worker.announce(generation, position)
                self.metrics.events.labels(projection.name).inc(len(events))
                self.metrics.checkpoint.labels(projection.name).set(position)
                on_batch(position)
        finally:
            await cancel_and_wait(reader)

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
        event.prepared = projection.prepare(event)
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
        projection: Projection,
        generation: int,
        events: Sequence[ProjectedEvent],
    ) -> None:
        """Rows and checkpoint in one transaction: applied exactly once."""
        async with conn.transaction():
            if await conn.fetchval(_FENCE, projection.name) != generation:
                raise GenerationChanged
            await projection.handle(conn, events)
            checkpoint = Tracking(tracking_name(projection.name, generation), events[-1].position)
            await EventStore.advance_tracking(conn, checkpoint)

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

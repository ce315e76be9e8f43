"""Running a projection: follow the log from the checkpoint in batches,
commit rows and checkpoint together, and isolate an event that fails."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import asyncpg

from projections import ProjectedEvent, Projection
from service.platform.tasks import cancel_and_wait
from service.projection_runner.monitoring import Monitoring
from service.projection_runner.state import (
    CLEAR_FAILURE,
    ENSURE_STATE,
    FENCE,
    GENERATION,
    RECORD_FAILURE,
    STATE,
    Apply,
    BatchFailed,
    EventFailed,
    GenerationChanged,
    Worker,
    describe,
    projected_event,
    projected_row,
    tracking_name,
)
from service.store import database
from service.store.eventstore import EventStore
from service.store.records import StoredRecord, Tracking

log = logging.getLogger("service.projection_runner")

YIELD_EVERY = 16
"""Events a live reader prepares before it lets other tasks run: paced
readers wake together with a page each, and would otherwise hold the loop
(and every request waiting on it) until all of it is decoded. The page is
queued whole once prepared, so the worker commits it as one batch: a
transaction per page, not per few events (each costs the worker's CPU
several round trips)."""
SHARED_EVENTS = 2048
"""Events of the log's head kept for the other live projections of the
process (four pages of a subscription): one ProjectedEvent per record,
decoded once. A projection further behind than that makes its own."""


class Running(Monitoring):
    """The catch-up loop of a worker that holds its projection's lock."""

    async def _project(self, conn: asyncpg.Connection, worker: Worker) -> None:
        """Follow the log for ever from the checkpoint of the serving
        generation, starting again whenever a rebuild swaps in a new one."""
        name = worker.projection.name
        await conn.execute(ENSURE_STATE, name)
        while True:
            state = await conn.fetchrow(STATE, name)
            generation: int = state["generation"]
            worker.stuck = state["failed_position"]
            start = await self.store.tracking_position(tracking_name(name, generation)) or 0
            worker.announce(generation, start)
            try:
                await self._follow(conn, worker, generation, start)
            except GenerationChanged:
                log.info("projection %s: a rebuild swapped in a new generation", name)

    async def _follow(
        self, conn: asyncpg.Connection, worker: Worker, generation: int, position: int
    ) -> None:
        """Commit batches from ``position`` for ever."""
        projection = worker.projection
        queue: asyncio.Queue[list[ProjectedEvent]] = asyncio.Queue(maxsize=2 * self.batch_size)
        reader = asyncio.create_task(
            self._read_live(projection, position, queue), name=f"{projection.name} reader"
        )

        async def apply(events: Sequence[ProjectedEvent]) -> None:
            await self._commit(conn, worker, generation, events)

        try:
            while True:
                events = await self._next_batch(queue, reader)
                if events is None:
                    if await conn.fetchval(GENERATION, projection.name) != generation:
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
        self, conn: asyncpg.Connection, worker: Worker, failed: EventFailed
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
            await conn.execute(RECORD_FAILURE, name, failed.position, describe(failed.error))
        except Exception as exc:  # the database may be away: the log line has it
            log.warning("projection %s: the failure could not be recorded: %s", name, exc)

    async def _read_live(
        self, projection: Projection, position: int, queue: asyncio.Queue[list[ProjectedEvent]]
    ) -> None:
        """The reader task of a running worker: follows the store's subscription
        (woken by NOTIFY, polling as the fallback). It prepares each page and
        queues it whole while the worker writes the one before, so reading,
        preparing and writing overlap; it waits when the queue is full."""
        async with self.store.subscribe(
            after=position,
            poll_interval=self.poll_interval,
            min_interval=self.min_interval,
            phase=self.phase_of(projection),
        ) as sub:
            while records := await sub.page():
                events: list[ProjectedEvent] = []
                for start in range(0, len(records), YIELD_EVERY):
                    events += self._projected(projection, records[start : start + YIELD_EVERY])
                    await asyncio.sleep(0)  # let requests in between: decoding is CPU work
                await queue.put(events)

    def phase_of(self, projection: Projection) -> float:
        """Seconds into each pacing interval at which ``projection`` reads the
        busy log (:func:`reading_phase`)."""
        return reading_phase(self.names, projection.name, self.min_interval)

    async def _read_until(
        self,
        projection: Projection,
        position: int,
        until: int,
        queue: asyncio.Queue[list[ProjectedEvent]],
    ) -> None:
        """The reader task of a rebuild: the log up to ``until`` in whole
        batches (no waiting for appends), then an empty batch to say "done"."""
        prepare, decode = projection.prepare, self._decode
        while position < until:
            # Not "up to until" in SQL: a range bound makes the planner sort
            # the whole range (rows mis-estimated) where LIMIT reads an index.
            rows = await self.store.read_log_rows(position, self.batch_size)
            if rows and rows[-1][0] > until:
                rows = [row for row in rows if row[0] <= until]
            if not rows:
                break  # the rest was deleted from the table: verify will say so
            events = [projected_row(row, decode) for row in rows]
            _prepare_all(prepare, events)
            await queue.put(events)
            position = events[-1].position
        await queue.put([])

    def _projected(
        self, projection: Projection, records: Sequence[StoredRecord]
    ) -> list[ProjectedEvent]:
        """Records of the log as ``projection`` is given them: shared with the
        process's other live projections, and prepared."""
        events = [self._shared(record) for record in records]
        prepare = _prepare_of(projection)
        if prepare is not None:
            _prepare_all(prepare, events)
        return events

    def _shared(self, record: StoredRecord) -> ProjectedEvent:
        """The record as the live projections of this process see it: one
        object for all of them, so its metadata is read and its payload
        decoded once. Keyed by the data key read with it too: a record read
        again after an erasure is decoded again (``"[erased]"``)."""
        key = (record.position, record.data_key)
        event = self._live_events.get(key)
        if event is None:
            event = projected_event(record, self._decode)
            self._live_events[key] = event
            if len(self._live_events) > SHARED_EVENTS:
                self._live_events.popitem(last=False)
        return event

    async def _next_batch(
        self, queue: asyncio.Queue[list[ProjectedEvent]], reader: asyncio.Task[None]
    ) -> list[ProjectedEvent] | None:
        """What the reader has queued (:func:`next_batch`)."""
        return await next_batch(queue, reader, self.batch_size, self.poll_interval)

    async def _commit(
        self,
        conn: asyncpg.Connection,
        worker: Worker,
        generation: int,
        events: Sequence[ProjectedEvent],
    ) -> None:
        """Rows and checkpoint in one transaction: applied exactly once."""
        projection = worker.projection
        position = events[-1].position
        async with conn.transaction():
            if await conn.fetchval(FENCE, projection.name) != generation:
                raise GenerationChanged
            await self._apply(conn, projection, tracking_name(projection.name, generation), events)
            if worker.stuck is not None and position >= worker.stuck:
                await conn.execute(CLEAR_FAILURE, projection.name, position)
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


def reading_phase(names: Sequence[str], name: str, interval: float) -> float:
    """Seconds into each pacing interval at which projection ``name`` reads
    the busy log: ``names`` in turn, the first at once. They share each page
    all the same (SharedReads), but the CPU each spends on it is spread over
    the interval: together at one tick, a request arriving then waited for all
    of them (bench/http.py: p99 1.92x the bare handler's, 1.70x staggered,
    over seven interleaved runs)."""
    return interval * list(names).index(name) / len(names)


async def next_batch(
    queue: asyncio.Queue[list[ProjectedEvent]],
    reader: asyncio.Task[None],
    batch_size: int,
    poll_interval: float,
) -> list[ProjectedEvent] | None:
    """What the reader has queued, about ``batch_size`` events (an empty list
    when a bounded reader is done); None after ``poll_interval`` with nothing
    (the caller then checks its generation). Raises the reader's error when
    it failed."""
    try:
        # Not asyncio.wait_for: on 3.11 it can swallow a cancellation that
        # arrives with a batch, and this worker would then never stop.
        async with asyncio.timeout(poll_interval):
            events = await queue.get()
    except TimeoutError:
        if reader.done():
            reader.result()  # the reader failed: raise its error
            raise RuntimeError("the log reader stopped") from None
        return None
    while events and len(events) < batch_size and not queue.empty():
        more = queue.get_nowait()
        if not more:
            queue.put_nowait(more)  # "done" comes after this batch
            break
        events += more
    return events


def _prepare_of(projection: Projection) -> Callable[[ProjectedEvent], None] | None:
    """The projection's ``prepare``, or None when it does not override the
    base class's (which does nothing): no call per event for nothing."""
    if type(projection).prepare is Projection.prepare:
        return None
    return projection.prepare


def _prepare_all(prepare: Callable[[ProjectedEvent], None], events: list[ProjectedEvent]) -> None:
    for event in events:
        try:
            prepare(event)
        except Exception:  # handle() meets it again, at this event's position
            continue

"""Group commit: many callers' appends share one transaction and one flush.

The commit flush dominates append cost, and positions must be handed out under
one lock to stay gap-free, so throughput comes from putting every append that
is waiting into the next transaction. `mf_append` decides each request on its
own, so one caller's conflict fails only that caller.

While a batch is in the database its callers wait, so the next batch only
forms once this one is answered: the time between two batches is spent here,
per request, and so is the driver's time to encode a batch. That is why the
per-request work is kept small, why columns that hold nothing go as NULL, and
why the committer has a connection (with the statement prepared) of its own.
Once appends arrive together, a batch also waits a little for more of them
(:class:`Linger`), as PostgreSQL's ``commit_delay`` does for its flushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import accumulate
from typing import Any
from uuid import UUID

import asyncpg

from service.platform import fast_json
from service.store.database import is_connection_error
from service.store.errors import (
    DuplicateEvent,
    IdempotencyConflict,
    StoreError,
    StoreUnavailable,
    TrackingConflict,
    VersionConflict,
)
from service.store.records import AppendRequest, AppendResult, NewEvent

log = logging.getLogger(__name__)

APPEND_SQL = (
    "SELECT req, status, conflict_stream, current_version, first_position, last_position,"
    " recorded_at FROM mf_append($1::int[], $2::int[], $3::text[], $4::bytea[], $5::text[],"
    " $6::bigint[], $7::mf_new_event[], $8::bool, $9::bool, $10::text)"
)
MAX_BATCH_EVENTS = 10_000
CONNECTION_RETRIES = 2
LINGER_S = 0.0005
"""How long a batch may wait for more appends once they arrive together."""
LINGER_ENOUGH = 16
"""Queued requests that end that wait at once."""

Connect = Callable[[], Awaitable[asyncpg.Connection]]

_FIRST_ONLY: tuple[int, ...] = (0,)


@dataclass(slots=True)
class _Pending:
    request: AppendRequest
    stored: Sequence[NewEvent]  # the request's events in the order they are stored
    order: Sequence[int]  # the caller's index of each stored event
    claims: tuple[Any, ...]  # what no other request of the same batch may touch
    future: asyncio.Future[AppendResult]


def _pending(request: AppendRequest, future: asyncio.Future[AppendResult]) -> _Pending:
    events = request.events
    if len(events) == 1:
        plain = request.idempotency_key is None and request.tracking is None
        claims = (events[0].stream_id.int,) if plain else _claims(request)
        return _Pending(request, events, _FIRST_ONLY, claims, future)
    order = _stream_runs(events)
    return _Pending(request, [events[i] for i in order], order, _claims(request), future)


def _stream_runs(events: Sequence[NewEvent]) -> Sequence[int]:
    """Indexes of `events` grouped so each stream is one run in version order,
    streams in order of first appearance."""
    first_seen: dict[UUID, int] = {}
    for index, event in enumerate(events):
        first_seen.setdefault(event.stream_id, index)
    return sorted(
        range(len(events)), key=lambda i: (first_seen[events[i].stream_id], events[i].version)
    )


def _claims(request: AppendRequest) -> tuple[Any, ...]:
    """What a request must not share with another request of the same batch:
    each is decided against the state before the batch. Streams are claimed by
    their UUID's int, which hashes in C (UUID.__hash__ is Python code)."""
    claims: set[Any] = {event.stream_id.int for event in request.events}
    if request.idempotency_key is not None:
        claims.add(("key", request.idempotency_key))
    if request.tracking is not None:
        claims.add(("tracking", request.tracking.name))
    return tuple(claims)


class Linger:
    """Whether, and how long, the next batch waits for more appends.

    A batch costs the process CPU whatever its size: on the 2-core VM about
    150 µs (the driver's round trip, waking the loop, settling), against some
    26 µs for each request in it. A busy server answers only a few requests in
    the time a batch is in the database, so without waiting its batches stay
    small (3.5 requests under `bench/http.py`) and that cost is paid every
    few requests. Like PostgreSQL's ``commit_delay``, which waits only while
    other transactions are active (``commit_siblings``), the next batch
    waits, up to `seconds`, only when the one before it was shared by several
    requests, and stops waiting once `enough` requests are queued: appends
    that come one at a time never wait.
    """

    def __init__(self, seconds: float = LINGER_S, enough: int = LINGER_ENOUGH):
        self.seconds = seconds
        self.enough = enough
        self._waits: set[asyncio.Future[None]] = set()

    def holds(self, last_batch: int, queued: int) -> bool:
        """Whether a batch about to be taken should wait first."""
        return self.seconds > 0 and last_batch > 1 and queued < self.enough

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._waits.add(done)
        timer = loop.call_later(self.seconds, _finish, done)
        try:
            await done
        finally:
            timer.cancel()
            self._waits.discard(done)

    def queued(self, count: int) -> None:
        """Called as a request is queued, with how many are: enough of them
        end the wait."""
        if self._waits and count >= self.enough:
            self.release()

    def release(self) -> None:
        """End every wait now (the committer is closing, or the queue is full)."""
        for done in self._waits:
            _finish(done)


def _finish(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


class GroupCommitter:
    """Queues appends and sends them to the database in batches, one batch per
    connection at a time, on connections of its own: appends never wait for a
    pooled connection that is busy with reads, and the statement stays prepared."""

    def __init__(
        self,
        connect: Connect,
        channel: str,
        *,
        max_in_flight: int = 1,
        linger: Linger | None = None,
    ):
        self._connect = connect
        self._channel = channel
        self._max_in_flight = max_in_flight
        self._linger = linger or Linger()
        self._last_batch = 0
        self._queue: list[_Pending] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle: list[_Session] = []
        self._closed = False
        self.batch_sizes: Counter[int] = Counter()
        """How many batches of each size (in requests) were taken, for metrics
        and for benchmarks that replay the same batching."""

    def submit(self, request: AppendRequest) -> asyncio.Future[AppendResult]:
        """Queue `request`; the future is settled once its batch is decided.
        (A plain function, not a coroutine: one less frame per append.)"""
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_pending(request, future))
        self._linger.queued(len(self._queue))
        if len(self._tasks) < self._max_in_flight:
            self._start_flushes()
        return future

    async def close(self) -> None:
        """Finish the batches in flight and close the sessions. Appends that
        come later fail (StoreUnavailable) instead of opening a session that
        nobody would close."""
        self._closed = True
        self._linger.release()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        idle, self._idle = self._idle, []
        for session in idle:
            with contextlib.suppress(Exception):
                await session.conn.close(timeout=5)

    def _start_flushes(self) -> None:
        while len(self._tasks) < min(self._max_in_flight, len(self._queue)):
            task = asyncio.create_task(self._flush_next())
            self._tasks.add(task)
            task.add_done_callback(self._flush_done)

    def _flush_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._start_flushes()

    async def _flush_next(self) -> None:
        """Take the batch when the task first runs (after the linger, if the
        last batch was shared), not when it is created, so every caller that
        queued in the meantime rides along."""
        if not self._closed and self._linger.holds(self._last_batch, len(self._queue)):
            await self._linger.wait()
        batch = self._take_batch()
        if batch:
            await self._flush(batch)

    def _take_batch(self) -> list[_Pending]:
        """The longest run of waiting requests that fits and shares nothing;
        a request that overlaps an earlier one waits for the next batch, which
        keeps the per-stream order in which requests arrived."""
        batch: list[_Pending] = []
        claimed: set[Any] = set()
        events = 0
        for pending in self._queue:
            events += len(pending.order)
            if batch and (events > MAX_BATCH_EVENTS or not claimed.isdisjoint(pending.claims)):
                break
            batch.append(pending)
            claimed.update(pending.claims)
        del self._queue[: len(batch)]
        self._last_batch = len(batch)
        self.batch_sizes[len(batch)] += 1
        return batch

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            rows = await self._call_with_retries(batch)
        except asyncpg.PostgresError as exc:
            if len(batch) > 1:
                # Something no pre-check catches (a reused event id) failed the
                # whole batch: decide each request alone so only its owner fails.
                for pending in batch:
                    await self._flush([pending])
                return
            _fail(batch, _translate(exc))
            return
        except StoreError as exc:
            _fail(batch, exc)
            return
        except Exception as exc:  # never leave a caller waiting forever
            log.exception("append batch failed")
            _fail(batch, exc)
            return
        _settle_batch(batch, rows)

    async def _call_with_retries(self, batch: list[_Pending]) -> list[asyncpg.Record]:
        """Retrying after a lost connection is safe: an append that did commit is
        recognised by its event ids (or idempotency key) and replayed."""
        args = _batch_arguments(batch, self._channel)
        for attempt in range(CONNECTION_RETRIES + 1):
            try:
                return await self._fetch(args)
            except Exception as exc:
                if not _breaks_session(exc):
                    raise
                if attempt == CONNECTION_RETRIES:
                    raise StoreUnavailable(f"database unreachable: {exc}") from exc
                await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _fetch(self, args: list[Any]) -> list[asyncpg.Record]:
        """Run the append on an idle session of the committer (opening one if
        there is none); a session whose state is unknown is thrown away."""
        session = self._idle.pop() if self._idle else await self._open_session()
        try:
            rows: list[asyncpg.Record] = await session.statement.fetch(*args)
        except BaseException as exc:
            if isinstance(exc, asyncpg.PostgresError) and not _breaks_session(exc):
                self._idle.append(session)  # the statement failed, the session is fine
            else:
                session.conn.terminate()
            raise
        self._idle.append(session)
        return rows

    async def _open_session(self) -> _Session:
        if self._closed:
            raise StoreUnavailable("the event store is closed")
        conn = await self._connect()
        try:
            return _Session(conn, await conn.prepare(APPEND_SQL))
        except BaseException:
            conn.terminate()
            raise


@dataclass(slots=True)
class _Session:
    """A committer connection with the append statement prepared on it, so a
    batch skips the driver's statement-cache lookup."""

    conn: asyncpg.Connection
    statement: asyncpg.prepared_stmt.PreparedStatement


def _breaks_session(exc: BaseException) -> bool:
    """A lost connection, or a prepared statement the server no longer accepts
    (its function was replaced): the next batch needs a new session."""
    return is_connection_error(exc) or isinstance(exc, asyncpg.InvalidCachedStatementError)


async def append_on(conn: asyncpg.Connection, request: AppendRequest, channel: str) -> AppendResult:
    """Append on the caller's connection, inside its transaction if it has one,
    so the events commit (or roll back) with the caller's other writes."""
    future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
    pending = _pending(request, future)
    try:
        args = _batch_arguments([pending], channel, own_transaction=False)
        rows = await conn.fetch(APPEND_SQL, *args)
    except asyncpg.PostgresError as exc:
        raise _translate(exc) from exc
    _settle_batch([pending], rows)
    return await future


def _batch_arguments(
    batch: list[_Pending], channel: str, *, own_transaction: bool = True
) -> list[Any]:
    """The positional parameters of APPEND_SQL for `batch`. The driver spends
    about as much per array element as on the rest of the call, so the events
    go as one array of rows (mf_new_event), and a column that holds nothing for
    this batch (no idempotency keys, no checkpoints) goes as NULL.

    The optimistic path costs a subtransaction; inside a caller's transaction
    that may append many times it is not offered, as more than 64 of them in
    one transaction slow down every session's snapshots."""
    requests = [p.request for p in batch]
    events, long_runs, consecutive = _event_rows(batch)
    keyed = any(r.idempotency_key is not None for r in requests)
    tracked = any(r.tracking is not None for r in requests)
    return [
        [len(r.events) for r in requests],
        list(accumulate((len(r.events) for r in requests[:-1]), initial=0)) if keyed else None,
        [r.idempotency_key for r in requests] if keyed else None,
        [_fingerprint(r) for r in requests] if keyed else None,
        [None if r.tracking is None else r.tracking.name for r in requests] if tracked else None,
        [None if r.tracking is None else r.tracking.position for r in requests]
        if tracked
        else None,
        events,
        long_runs,
        own_transaction and consecutive and not tracked,
        channel,
    ]


_EventRow = tuple[UUID, int, UUID, str, bytes, str | None, bool | None]


def _event_rows(batch: list[_Pending]) -> tuple[list[_EventRow], bool, bool]:
    """The batch's events as mf_new_event rows in stored order; whether any
    event continues a run of its stream; whether every run's versions are
    consecutive."""
    if all(len(p.stored) == 1 for p in batch):
        return [_row(p.stored[0], None) for p in batch], False, True
    rows: list[_EventRow] = []
    long_runs, consecutive = False, True
    for pending in batch:
        previous: NewEvent | None = None
        for event in pending.stored:
            continues = previous is not None and previous.stream_id == event.stream_id
            if continues and previous is not None:
                long_runs = True
                consecutive = consecutive and event.version == previous.version + 1
            rows.append(_row(event, continues or None))
            previous = event
    return rows, long_runs, consecutive


def _row(event: NewEvent, continues: bool | None) -> _EventRow:
    metadata = fast_json.dumps(dict(event.metadata)) if event.metadata else None
    return (
        event.stream_id,
        event.version,
        event.event_id,
        event.topic,
        event.payload,
        metadata,
        continues,
    )


def _fingerprint(request: AppendRequest) -> bytes | None:
    return None if request.idempotency_key is None else request.effective_fingerprint()


def _settle_batch(batch: list[_Pending], rows: list[asyncpg.Record]) -> None:
    if len(rows) == 1 and rows[0]["req"] == 0:
        _settle_all_stored(batch, rows[0]["first_position"], rows[0]["recorded_at"])
        return
    for row in rows:
        pending = batch[row["req"] - 1]
        if not pending.future.done():
            _settle(pending, row)


def _settle_all_stored(batch: list[_Pending], first: int, recorded_at: datetime) -> None:
    """The optimistic path's answer: every request was stored, in batch order,
    from position `first` on."""
    position = first
    for pending in batch:
        if not pending.future.done():
            positions = _positions(pending.order, position)
            pending.future.set_result(AppendResult(positions, recorded_at))
        position += len(pending.order)


def _positions(order: Sequence[int], first: int) -> tuple[int, ...]:
    """The caller's events' positions, in the caller's order, given the order in
    which they were stored from position `first` on."""
    if order is _FIRST_ONLY:
        return (first,)
    positions = [0] * len(order)
    for position, caller_index in enumerate(order, start=first):
        positions[caller_index] = position
    return tuple(positions)


def _stored_positions(pending: _Pending, first: int | None, last: int | None) -> tuple[int, ...]:
    """A request's positions from the range it was stored in; a replay under an
    idempotency key (with a fingerprint of the caller's) may name a range of
    another length, which is then given as stored."""
    if first is None or last is None:
        return ()
    if last - first + 1 != len(pending.order):
        return tuple(range(first, last + 1))
    return _positions(pending.order, first)


def _settle(pending: _Pending, row: asyncpg.Record) -> None:
    request, status = pending.request, row["status"]
    if status in ("ok", "replayed"):
        positions = _stored_positions(pending, row["first_position"], row["last_position"])
        pending.future.set_result(
            AppendResult(positions, row["recorded_at"], replayed=status == "replayed")
        )
        return
    error: StoreError
    if status == "version_conflict":
        stream = row["conflict_stream"]
        attempted = next(e.version for e in request.events if e.stream_id == stream)
        error = VersionConflict(stream, attempted, row["current_version"])
    elif status == "idempotency_conflict":
        error = IdempotencyConflict(request.idempotency_key or "")
    else:
        assert request.tracking is not None
        error = TrackingConflict(request.tracking.name, request.tracking.position)
    pending.future.set_exception(error)


def _fail(batch: list[_Pending], exc: BaseException) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(exc)


def _translate(exc: asyncpg.PostgresError) -> BaseException:
    if isinstance(exc, asyncpg.UniqueViolationError):
        return DuplicateEvent(f"an event id in this append is already stored: {exc}")
    error: BaseException = exc
    return error

"""Group commit: many callers' appends share one transaction and one flush.

The commit flush dominates append cost, and positions must be handed out under
one lock to stay gap-free, so throughput comes from putting every append that
is waiting into the next transaction. `mf_append` decides each request on its
own, so one caller's conflict fails only that caller.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

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
    " recorded_at FROM mf_append($1::int[], $2::text[], $3::bytea[], $4::text[],"
    " $5::bigint[], $6::int[], $7::uuid[], $8::bigint[], $9::uuid[], $10::text[],"
    " $11::bytea[], $12::text[], $13::text)"
)
MAX_BATCH_EVENTS = 10_000
CONNECTION_RETRIES = 2


@dataclass
class _Pending:
    request: AppendRequest
    order: list[int]  # the caller's event indexes, in the order they are stored
    future: asyncio.Future[AppendResult]


def _stream_runs(events: Sequence[NewEvent]) -> list[int]:
    """Indexes of `events` grouped so each stream is one run in version order,
    streams in order of first appearance."""
    first_seen: dict[UUID, int] = {}
    for index, event in enumerate(events):
        first_seen.setdefault(event.stream_id, index)
    return sorted(
        range(len(events)), key=lambda i: (first_seen[events[i].stream_id], events[i].version)
    )


def _claims(request: AppendRequest) -> set[Any]:
    """What a request must not share with another request of the same batch:
    each is decided against the state before the batch."""
    claims: set[Any] = {event.stream_id for event in request.events}
    if request.idempotency_key is not None:
        claims.add(("key", request.idempotency_key))
    if request.tracking is not None:
        claims.add(("tracking", request.tracking.name))
    return claims


class GroupCommitter:
    def __init__(self, pool: asyncpg.Pool, channel: str, *, max_in_flight: int = 1):
        self._pool = pool
        self._channel = channel
        self._max_in_flight = max_in_flight
        self._queue: list[_Pending] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, request: AppendRequest) -> AppendResult:
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(request, _stream_runs(request.events), future))
        self._start_flushes()
        return await future

    async def close(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _start_flushes(self) -> None:
        while len(self._tasks) < min(self._max_in_flight, len(self._queue)):
            task = asyncio.create_task(self._flush_next())
            self._tasks.add(task)
            task.add_done_callback(self._flush_done)

    def _flush_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._start_flushes()

    async def _flush_next(self) -> None:
        """Take the batch when the task first runs, not when it is created, so
        every caller that queued in the meantime rides along."""
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
            claims = _claims(pending.request)
            events += len(pending.request.events)
            if batch and (events > MAX_BATCH_EVENTS or claims & claimed):
                break
            batch.append(pending)
            claimed |= claims
        self._queue = self._queue[len(batch) :]
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
        for row in rows:
            pending = batch[row["req"] - 1]
            if not pending.future.done():
                _settle(pending, row)

    async def _call_with_retries(self, batch: list[_Pending]) -> list[asyncpg.Record]:
        """Retrying after a lost connection is safe: an append that did commit is
        recognised by its event ids (or idempotency key) and replayed."""
        args = _batch_arguments(batch, self._channel)
        for attempt in range(CONNECTION_RETRIES + 1):
            try:
                return list(await self._pool.fetch(APPEND_SQL, *args))
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                if attempt == CONNECTION_RETRIES:
                    raise StoreUnavailable(f"database unreachable: {exc}") from exc
                await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")


async def append_on(conn: asyncpg.Connection, request: AppendRequest, channel: str) -> AppendResult:
    """Append on the caller's connection, inside its transaction if it has one,
    so the events commit (or roll back) with the caller's other writes."""
    future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
    pending = _Pending(request, _stream_runs(request.events), future)
    try:
        rows = await conn.fetch(APPEND_SQL, *_batch_arguments([pending], channel))
    except asyncpg.PostgresError as exc:
        raise _translate(exc) from exc
    _settle(pending, rows[0])
    return await future


def _batch_arguments(batch: list[_Pending], channel: str) -> list[Any]:
    requests = [p.request for p in batch]
    events = [p.request.events[i] for p in batch for i in p.order]
    return [
        [len(r.events) for r in requests],
        [r.idempotency_key for r in requests],
        [r.effective_fingerprint() if r.idempotency_key else None for r in requests],
        [r.tracking.name if r.tracking else None for r in requests],
        [r.tracking.position if r.tracking else None for r in requests],
        [n for n, p in enumerate(batch, start=1) for _ in p.order],
        [e.stream_id for e in events],
        [e.version for e in events],
        [e.event_id for e in events],
        [e.topic for e in events],
        [e.payload for e in events],
        [json.dumps(dict(e.metadata), separators=(",", ":")) for e in events],
        channel,
    ]


def _settle(pending: _Pending, row: asyncpg.Record) -> None:
    request, status = pending.request, row["status"]
    if status in ("ok", "replayed"):
        first = row["first_position"]
        stored_order = [] if first is None else range(first, row["last_position"] + 1)
        positions = [0] * len(stored_order)
        for position, caller_index in zip(stored_order, pending.order, strict=True):
            positions[caller_index] = position
        pending.future.set_result(
            AppendResult(tuple(positions), row["recorded_at"], replayed=status == "replayed")
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

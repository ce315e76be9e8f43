"""Following the global log: LISTEN/NOTIFY to wake up, polling as the fallback.

One dedicated connection per store LISTENs for appends and wakes every
subscription in the process. If that connection drops, subscriptions keep
working by polling while it reconnects, so a lost notification delays a reader
by one poll interval at most and never loses an event: readers always query
the log after their last position.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, NamedTuple

import asyncpg

from service.platform.tasks import cancel_and_wait
from service.store.database import connect
from service.store.errors import StoreUnavailable
from service.store.records import StoredRecord

log = logging.getLogger(__name__)

ReadLog = Callable[[int, int, Sequence[str]], Awaitable[list[StoredRecord]]]


class Notifier:
    """Keeps one LISTEN connection alive and fans wake-ups out to waiters."""

    def __init__(self, dsn: str, schema: str, channel: str):
        self._dsn, self._schema, self._channel = dsn, schema, channel
        self._waiters: set[asyncio.Event] = set()
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="mentorflow-notifier")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    def register(self) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.add(event)
        return event

    def unregister(self, event: asyncio.Event) -> None:
        self._waiters.discard(event)

    def wake_all(self, *_: Any) -> None:
        for event in self._waiters:
            event.set()

    async def _run(self) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect(self._dsn, self._schema)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(self._channel, self.wake_all)
                self.listening.set()
                self.wake_all()  # anything appended while we were not listening
                await lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("notification listener unavailable, polling: %s", exc)
            finally:
                self.listening.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=1)
            await asyncio.sleep(1.0)


class SharedReads:
    """The reads of the log's head that subscriptions of one process share.

    Every append wakes every subscription, and those at the head then read
    the same stretch of the log, each for itself (a query, and every row
    decoded, per projection). Paced subscriptions read on ticks of one
    interval (see `Subscription._pace`), so a read already under way, or done
    within `ttl`, is handed out again instead: to a subscription at the
    position it was read after, the whole page; to one further on but inside
    it, the rest of the page after its own position. Either may lack what was
    appended since the read began; a subscription only needs a prefix of what
    follows its position, and reads again from the end of it.

    The rest of a page is what keeps the reads shared: the live projections
    read at staggered points of the interval, so once their positions differ
    each would ask from its own and never meet the others' pages again
    (a worker under bench/http.py's load shared 65 of 200 reads; about two
    in three with the rest handed out). A full page (as many records as asked for: more follow
    it) is handed out only whole, so that a reader catching up does not take
    a short rest of it for the head and wait out an interval. A page that
    found nothing is never handed out again: a subscriber woken by an append
    must see it, so it reads for itself."""

    def __init__(self, read_log: ReadLog, ttl: float):
        self._read_log = read_log
        self._ttl = ttl
        self._pages: dict[_PageKey, _Page] = {}
        self._reading: dict[_PageKey, asyncio.Future[list[StoredRecord]]] = {}

    async def __call__(self, after: int, limit: int, topics: Sequence[str]) -> list[StoredRecord]:
        loop = asyncio.get_running_loop()
        key = (after, limit, tuple(topics))
        shared = self._shared(key, loop.time())
        if shared is not None:
            return shared
        under_way = self._reading.get(key)
        if under_way is not None:
            await asyncio.wait((under_way,))
            if not under_way.cancelled() and under_way.exception() is None and under_way.result():
                return under_way.result()
            return await self._read_log(after, limit, topics)
        return await self._read(key, loop)

    def _shared(self, key: _PageKey, now: float) -> list[StoredRecord] | None:
        """What a page read within ``ttl`` holds after ``key``'s position: the
        page itself at its own position, the rest of a page that is not full
        further on inside it; None when no page holds anything for it."""
        page = self._pages.get(key)
        if page is not None and now - page.read_at <= self._ttl:
            return page.records
        after, limit, topics = key
        for (start, page_limit, page_topics), page in self._pages.items():
            if (
                page_limit == limit
                and page_topics == topics
                and len(page.records) < limit
                and start < after < page.records[-1].position
                and now - page.read_at <= self._ttl
            ):
                rest = bisect.bisect_right(page.records, after, key=_position)
                return page.records[rest:]
        return None

    async def _read(self, key: _PageKey, loop: asyncio.AbstractEventLoop) -> list[StoredRecord]:
        reading: asyncio.Future[list[StoredRecord]] = loop.create_future()
        self._reading[key] = reading
        try:
            page = await self._read_log(*key)
        except BaseException as exc:
            reading.set_exception(exc)
            reading.exception()  # retrieved: those waiting read for themselves
            raise
        finally:
            del self._reading[key]
        reading.set_result(page)
        if page:
            now = loop.time()
            self._pages = {k: v for k, v in self._pages.items() if now - v.read_at <= self._ttl}
            self._pages[key] = _Page(now, page)
        return page


class _Page(NamedTuple):
    read_at: float
    records: list[StoredRecord]


def _position(record: StoredRecord) -> int:
    return record.position


_PageKey = tuple[int, int, tuple[str, ...]]


def next_tick(earliest: float, interval: float, phase: float) -> float:
    """The first tick at or after ``earliest``: ticks fall every ``interval``
    seconds of the loop's clock, ``phase`` seconds into each. Subscriptions
    of one phase read together (and share the page, SharedReads); those of
    other phases read the same page a little later, so the work each then
    does on it is spread over the interval instead of landing at once."""
    return math.ceil((earliest - phase) / interval) * interval + phase


class Subscription(AsyncIterator[StoredRecord]):
    """Yields every record after `after`, in position order, then waits for more.

    Use as `async with store.subscribe(after=n) as sub: async for record in sub`.
    While the database is unreachable it keeps retrying; `stop()` ends it.
    """

    def __init__(
        self,
        read_log: ReadLog,
        notifier: Notifier,
        after: int,
        topics: Sequence[str] = (),
        *,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        min_interval: float = 0.0,
        phase: float = 0.0,
    ):
        self._phase = phase
        self._read_log = read_log
        self._notifier = notifier
        self.position = after
        self._topics = topics
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._min_interval = min_interval
        self._last_read = 0.0
        self._at_head = False
        self._buffer: list[StoredRecord] = []
        self._woken = notifier.register()
        self._stopped = False

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopped = True
        self._woken.set()
        self._notifier.unregister(self._woken)

    def __aiter__(self) -> Subscription:
        return self

    async def page(self) -> list[StoredRecord]:
        """Every record read and not yet yielded, in position order, waiting
        for one if there is none; empty once stopped. For readers that take
        records by the page (one call, not one per record)."""
        while not self._buffer:
            if self._stopped:
                return []
            await self._fill()
        if self._stopped:
            return []
        records, self._buffer = self._buffer[::-1], []
        self.position = records[-1].position
        return records

    async def __anext__(self) -> StoredRecord:
        while not self._buffer:
            if self._stopped:
                raise StopAsyncIteration
            await self._fill()
        if self._stopped:
            raise StopAsyncIteration
        record = self._buffer.pop()
        self.position = record.position
        return record

    async def _fill(self) -> None:
        if self._at_head:
            await self._pace()
        self._woken.clear()
        try:
            batch = await self._read_log(self.position, self._batch_size, self._topics)
        except StoreUnavailable:
            batch = []
        self._at_head = len(batch) < self._batch_size
        if batch:
            self._last_read = asyncio.get_running_loop().time()
            self._buffer = batch[::-1]  # pop() from the end in position order (pages are shared)
            return
        # Not asyncio.wait_for: on 3.11 it can swallow a cancellation that
        # arrives with a wake-up, and the reader would then never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._poll_interval):
                await self._woken.wait()

    async def _pace(self) -> None:
        """At the head of a busy log, read at most once per `min_interval` after
        a read that found records: every append wakes every subscriber, and a
        reader that read after each one would spend a query (and a projection a
        transaction) per few events. After a quiet spell the first read is not
        delayed."""
        now = asyncio.get_running_loop().time()
        earliest = self._last_read + self._min_interval
        if earliest > now:
            await asyncio.sleep(next_tick(earliest, self._min_interval, self._phase) - now)

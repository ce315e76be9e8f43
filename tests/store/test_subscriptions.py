"""Following the global log: catch-up, wake-up by NOTIFY, and no skipped events."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from uuid import uuid4

import pytest

from service.store.errors import StoreUnavailable
from service.store.eventstore import EventStore
from service.store.group_commit import append_on
from service.store.records import AppendRequest, NewEvent, StoredRecord
from service.store.subscriptions import SharedReads, Subscription

pytestmark = pytest.mark.db


async def _take(subscription: Subscription, n: int, timeout: float = 10) -> list[StoredRecord]:
    async def take() -> list[StoredRecord]:
        return [await anext(subscription) for _ in range(n)]

    return await asyncio.wait_for(take(), timeout)


async def test_catch_up_from_any_position_then_follow(store: EventStore) -> None:
    stream = uuid4()
    await store.append([NewEvent(stream, v, "t", b"{}") for v in range(1, 6)])
    async with store.subscribe(after=2) as subscription:
        assert [r.position for r in await _take(subscription, 3)] == [3, 4, 5]
        await store.append([NewEvent(stream, 6, "t", b"{}")])
        assert [r.position for r in await _take(subscription, 1)] == [6]


async def test_notify_wakes_a_subscriber_before_its_poll_interval(store: EventStore) -> None:
    async with store.subscribe(after=0, poll_interval=30) as subscription:
        await asyncio.wait_for(store._notifier.listening.wait(), 10)
        waiting = asyncio.create_task(_take(subscription, 1, timeout=5))
        await asyncio.sleep(0.05)
        await store.append([NewEvent(uuid4(), 1, "t", b"{}")])
        assert [r.position for r in await waiting] == [1]


async def test_polling_finds_events_when_no_notification_arrives(store: EventStore) -> None:
    async with store.subscribe(after=0, poll_interval=0.1) as subscription:
        await store._notifier.stop()  # as if the LISTEN connection were lost
        async with store.pool.acquire() as conn, conn.transaction():
            await append_on(conn, AppendRequest((NewEvent(uuid4(), 1, "t", b"{}"),)), store.channel)
        assert [r.position for r in await _take(subscription, 1, timeout=5)] == [1]


async def test_a_late_commit_is_not_skipped(store: EventStore) -> None:
    """Writer A takes position 1 and holds its transaction open; writer B starts
    later. The subscriber must see A's event, then B's, never B's alone."""
    first, second = uuid4(), uuid4()
    async with store.subscribe(after=0, poll_interval=0.05) as subscription:
        conn = await store.pool.acquire()
        transaction = conn.transaction()
        await transaction.start()
        try:
            held = await append_on(
                conn, AppendRequest((NewEvent(first, 1, "t", b"{}"),)), store.channel
            )
            assert held.positions == (1,)
            later = asyncio.create_task(store.append([NewEvent(second, 1, "t", b"{}")]))
            await asyncio.sleep(0.3)
            assert not later.done(), "a later writer must wait for the earlier one"
            assert await store.read_log(0, 10) == []
            pending = asyncio.create_task(_take(subscription, 2))
            await asyncio.sleep(0.2)
            assert not pending.done()
        finally:
            await transaction.commit()
            await store.pool.release(conn)
        received = await pending
        assert [(r.position, r.stream_id) for r in received] == [(1, first), (2, second)]
        assert (await later).positions == (2,)


async def test_subscription_stops(store: EventStore) -> None:
    subscription = store.subscribe(after=0, poll_interval=0.05)
    waiting = asyncio.create_task(_take(subscription, 1))
    await asyncio.sleep(0.1)
    subscription.stop()
    with pytest.raises(StopAsyncIteration):
        await waiting


async def test_the_first_append_after_a_quiet_spell_is_read_at_once(store: EventStore) -> None:
    async with store.subscribe(after=0, poll_interval=30, min_interval=30) as subscription:
        await asyncio.wait_for(store._notifier.listening.wait(), 10)
        waiting = asyncio.create_task(_take(subscription, 1, timeout=5))
        await asyncio.sleep(0.05)
        await store.append([NewEvent(uuid4(), 1, "t", b"{}")])
        assert [r.position for r in await waiting] == [1]


async def test_at_the_head_of_a_busy_log_reads_are_paced(store: EventStore) -> None:
    """After a read that found records, the next waits out `min_interval`, however
    many appends wake it: the second append is not read while the first is recent."""
    async with store.subscribe(after=0, poll_interval=30, min_interval=30) as subscription:
        await asyncio.wait_for(store._notifier.listening.wait(), 10)
        await store.append([NewEvent(uuid4(), 1, "t", b"{}")])
        assert [r.position for r in await _take(subscription, 1)] == [1]
        await store.append([NewEvent(uuid4(), 1, "t", b"{}")])
        paced = asyncio.create_task(_take(subscription, 1))
        await asyncio.sleep(0.5)
        assert not paced.done()
        paced.cancel()
    async with store.subscribe(after=1, poll_interval=30, min_interval=0) as unpaced:
        assert [r.position for r in await _take(unpaced, 1)] == [2]


class _CountingLog:
    """The store's own read_log, counting the queries that reach it."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.queries = 0

    async def __call__(self, after: int, limit: int, topics: Sequence[str]) -> list[StoredRecord]:
        self.queries += 1
        return await self.store.read_log(after, limit, topics)


async def test_subscriptions_at_the_same_position_share_one_read(store: EventStore) -> None:
    log = _CountingLog(store)
    shared = SharedReads(log, ttl=60)
    stream = uuid4()
    await store.append([NewEvent(stream, v, "t", b"{}") for v in (1, 2)])
    first = await shared(0, 10, ())
    second = await shared(0, 10, ())
    assert [r.position for r in first] == [r.position for r in second] == [1, 2]
    assert log.queries == 1
    await shared(2, 10, ())  # another position: its own query
    assert log.queries == 2


async def test_a_subscription_further_on_gets_the_rest_of_a_page_read_before(
    store: EventStore,
) -> None:
    """Live projections read at staggered points of the interval, so their
    positions drift apart: one inside a page another just read takes the rest
    of it instead of a query of its own (and reads from its end next)."""
    log = _CountingLog(store)
    shared = SharedReads(log, ttl=60)
    await store.append([NewEvent(uuid4(), 1, "t", b"{}") for _ in range(5)])
    assert [r.position for r in await shared(0, 10, ())] == [1, 2, 3, 4, 5]
    assert [r.position for r in await shared(2, 10, ())] == [3, 4, 5]
    assert [r.position for r in await shared(4, 10, ())] == [5]
    assert log.queries == 1
    await shared(5, 10, ())  # at the end of the page: what follows is not in it
    await shared(1, 10, ("other",))  # other topics: another page
    await shared(1, 9, ())  # another limit: another page
    assert log.queries == 4


async def test_a_full_page_is_shared_only_whole(store: EventStore) -> None:
    """A full page (as many records as asked for) has more after it: the
    rest of it, shorter than the limit, would look like the head of the log
    to a reader catching up, which would then wait out an interval."""
    log = _CountingLog(store)
    shared = SharedReads(log, ttl=60)
    await store.append([NewEvent(uuid4(), 1, "t", b"{}") for _ in range(5)])
    assert [r.position for r in await shared(0, 3, ())] == [1, 2, 3]
    assert [r.position for r in await shared(1, 3, ())] == [2, 3, 4]
    assert log.queries == 2


async def test_the_rest_of_a_page_is_not_shared_after_its_ttl(store: EventStore) -> None:
    log = _CountingLog(store)
    shared = SharedReads(log, ttl=0)
    await store.append([NewEvent(uuid4(), 1, "t", b"{}") for _ in range(3)])
    await shared(0, 10, ())
    await asyncio.sleep(0.01)
    await store.append([NewEvent(uuid4(), 1, "t", b"{}")])
    assert [r.position for r in await shared(1, 10, ())] == [2, 3, 4]
    assert log.queries == 2


async def test_a_read_that_found_nothing_is_never_shared(store: EventStore) -> None:
    """A subscriber woken by an append must read it, not a page read before it."""
    log = _CountingLog(store)
    shared = SharedReads(log, ttl=60)
    assert await shared(0, 10, ()) == []
    await store.append([NewEvent(uuid4(), 1, "t", b"{}")])
    assert [r.position for r in await shared(0, 10, ())] == [1]
    assert log.queries == 2


async def test_a_shared_page_expires_after_its_ttl(store: EventStore) -> None:
    log = _CountingLog(store)
    shared = SharedReads(log, ttl=0)
    await store.append([NewEvent(uuid4(), 1, "t", b"{}")])
    await shared(0, 10, ())
    await asyncio.sleep(0.01)
    await store.append([NewEvent(uuid4(), 1, "t", b"{}")])
    assert [r.position for r in await shared(0, 10, ())] == [1, 2]
    assert log.queries == 2


async def test_subscribers_sharing_pages_each_see_every_record_in_order(store: EventStore) -> None:
    stream = uuid4()
    subscriptions = [store.subscribe(after=0, poll_interval=0.05) for _ in range(4)]
    try:
        for version in range(1, 41):
            await store.append([NewEvent(stream, version, "t", b"{}")])
        for subscription in subscriptions:
            assert [r.version for r in await _take(subscription, 40)] == list(range(1, 41))
    finally:
        for subscription in subscriptions:
            subscription.stop()


async def test_reads_under_way_are_shared_and_an_empty_one_is_read_again(
    store: EventStore,
) -> None:
    log = _CountingLog(store)
    shared = SharedReads(log, ttl=0)
    assert list(await asyncio.gather(shared(0, 10, ()), shared(0, 10, ()))) == [[], []]
    assert log.queries == 2  # found nothing: the second reader read for itself
    await store.append([NewEvent(uuid4(), 1, "t", b"{}")])
    first, second = await asyncio.gather(shared(0, 10, ()), shared(0, 10, ()))
    assert [r.position for r in first] == [r.position for r in second] == [1]
    assert log.queries == 3


async def test_a_failed_read_under_way_leaves_the_others_to_read_for_themselves(
    store: EventStore,
) -> None:
    calls = 0

    async def flaky(after: int, limit: int, topics: Sequence[str]) -> list[StoredRecord]:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0.01)
            raise StoreUnavailable("gone")
        return await store.read_log(after, limit, topics)

    await store.append([NewEvent(uuid4(), 1, "t", b"{}")])
    shared = SharedReads(flaky, ttl=60)
    first, second = await asyncio.gather(
        shared(0, 10, ()), shared(0, 10, ()), return_exceptions=True
    )
    assert isinstance(first, StoreUnavailable)
    assert not isinstance(second, BaseException)
    assert [r.position for r in second] == [1]


async def test_a_page_holds_what_was_read_and_not_yet_yielded_in_order(store: EventStore) -> None:
    stream = uuid4()
    await store.append([NewEvent(stream, v, "t", b"{}") for v in range(1, 6)])
    async with store.subscribe(after=0) as subscription:
        assert [r.position for r in await _take(subscription, 2)] == [1, 2]
        page = await asyncio.wait_for(subscription.page(), 10)
        assert [r.position for r in page] == [3, 4, 5] and subscription.position == 5
        waiting = asyncio.create_task(subscription.page())  # waits for the next append
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await store.append([NewEvent(stream, 6, "t", b"{}")])
        assert [r.position for r in await asyncio.wait_for(waiting, 10)] == [6]
        subscription.stop()
        assert await subscription.page() == []

"""Group commit's two paths: the optimistic one that stores a whole batch with
one INSERT, and the one that decides each request on its own when anything in
the batch conflicts. Both must leave the same log: contiguous positions and
hash chains that verify."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from uuid import UUID, uuid4

import pytest

from service.store import group_commit
from service.store.database import connect
from service.store.errors import (
    IdempotencyConflict,
    StoreUnavailable,
    TrackingConflict,
    VersionConflict,
)
from service.store.eventstore import EventStore
from service.store.group_commit import GroupCommitter, Linger, append_on
from service.store.records import AppendRequest, AppendResult, NewEvent, Tracking
from tests.support.database import drop_schema

pytestmark = pytest.mark.db


def event(stream: UUID, version: int, payload: bytes = b"{}", **metadata: str) -> NewEvent:
    return NewEvent(stream, version, "t", payload, metadata)


async def call_mf_append(store: EventStore, requests: list[AppendRequest]) -> list[int]:
    """The `req` column of one mf_append call: [0] when the whole batch was
    stored by the optimistic path, one row per request otherwise."""
    batch = [group_commit._pending(r, asyncio.get_running_loop().create_future()) for r in requests]
    args = group_commit._batch_arguments(batch, store.channel)
    rows = await store.with_connection(lambda conn: conn.fetch(group_commit.APPEND_SQL, *args))
    return [row["req"] for row in rows]


async def assert_log_is_sound(store: EventStore, streams: list[UUID]) -> None:
    assert await store.missing_positions() == []
    log = await store.read_log(0, 10_000)
    assert [r.position for r in log] == list(range(1, len(log) + 1))
    for stream in streams:
        first = min(r.version for r in log if r.stream_id == stream)
        result = await store.verify_stream(stream, first_version=first)
        assert result.valid, result


async def test_a_batch_without_conflicts_is_stored_by_one_insert(store: EventStore) -> None:
    streams = [uuid4() for _ in range(4)]
    first = [AppendRequest((event(s, 1),)) for s in streams]
    assert await call_mf_append(store, first) == [0]
    keyed = [AppendRequest((event(s, 2),), idempotency_key=f"k-{s}") for s in streams]
    assert await call_mf_append(store, keyed) == [0]
    with_conflict = [AppendRequest((event(s, 3),)) for s in streams[1:]]
    with_conflict.append(AppendRequest((event(streams[0], 2),)))
    assert await call_mf_append(store, with_conflict) == [1, 2, 3, 4]
    with_gap = [AppendRequest((event(streams[1], 9),)), AppendRequest((event(uuid4(), 1),))]
    assert await call_mf_append(store, with_gap) == [1, 2]
    await assert_log_is_sound(store, streams)


async def test_mixed_batch_decides_each_request_and_keeps_the_log_sound(
    store: EventStore,
) -> None:
    old, gap, taken, keyed, multi_a, multi_b = (uuid4() for _ in range(6))
    for stream in (old, gap, taken):
        await store.append([event(stream, 1), event(stream, 2)])
    await store.append([event(keyed, 1)], idempotency_key="used")
    fresh = [uuid4() for _ in range(5)]
    outcomes = await asyncio.gather(
        *[store.append([event(s, 1)]) for s in fresh],
        store.append([event(old, 3, meta="x")]),
        store.append([event(gap, 4)]),
        store.append([event(taken, 2)]),
        store.append([event(keyed, 2, b'{"other": 1}')], idempotency_key="used"),
        store.append([event(multi_a, 1), event(multi_b, 7), event(multi_a, 2)]),
        return_exceptions=True,
    )
    assert all(not isinstance(o, BaseException) for o in outcomes[:6] + outcomes[9:]), outcomes
    assert isinstance(outcomes[6], VersionConflict) and outcomes[6].current_version == 2
    assert isinstance(outcomes[7], VersionConflict) and outcomes[7].current_version == 2
    assert isinstance(outcomes[8], IdempotencyConflict)
    multi = outcomes[9]
    assert not isinstance(multi, BaseException)
    records = {r.position: r for r in await store.read_log(0, 100)}
    assert [(records[p].stream_id, records[p].version) for p in multi.positions] == [
        (multi_a, 1),
        (multi_b, 7),
        (multi_a, 2),
    ]
    assert await store.stream_version(gap) == 2
    await assert_log_is_sound(store, [old, gap, taken, keyed, multi_a, multi_b, *fresh])


async def test_runs_of_several_events_chain_in_one_batch(store: EventStore) -> None:
    a, b = uuid4(), uuid4()
    await store.append([event(a, 1)])
    singles = [uuid4() for _ in range(3)]
    results = await asyncio.gather(
        store.append([event(a, 2), event(b, 1, meta="m"), event(a, 3), event(b, 2)]),
        *[store.append([event(s, 1)]) for s in singles],
    )
    assert results[0].positions == (2, 4, 3, 5)
    assert [r.version for r in await store.read_stream(a)] == [1, 2, 3]
    await assert_log_is_sound(store, [a, b, *singles])


async def test_a_new_stream_starts_anywhere_then_must_continue(store: EventStore) -> None:
    stream = uuid4()
    assert (await store.append([event(stream, 5)])).positions == (1,)
    assert (await store.append([event(stream, 6), event(stream, 7)])).positions == (2, 3)
    with pytest.raises(VersionConflict):
        await store.append([event(stream, 9)])
    with pytest.raises(VersionConflict):
        await store.append([event(stream, 8), event(stream, 10)])
    await assert_log_is_sound(store, [stream])


async def test_a_refused_batch_gives_back_its_positions(store: EventStore) -> None:
    stream = uuid4()
    await store.append([event(stream, 1)], tracking=Tracking("p", 5))
    with pytest.raises(TrackingConflict):
        await store.append([event(stream, 2)], tracking=Tracking("p", 5))
    with pytest.raises(VersionConflict):
        await store.append([event(stream, 1), event(stream, 2), event(stream, 3)])
    assert await store.max_position() == 1
    assert (await store.append([event(stream, 2)])).positions == (2,)
    await assert_log_is_sound(store, [stream])


async def test_an_append_rolled_back_with_its_transaction_leaves_no_position(
    store: EventStore,
) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with store.transaction() as conn:
            await append_on(conn, AppendRequest((event(uuid4(), 1),)), store.channel)
            raise Boom
    assert await store.max_position() == 0
    assert (await store.append([event(uuid4(), 1)])).positions == (1,)


async def test_an_append_after_close_fails_and_opens_no_connection(dsn: str, schema: str) -> None:
    """The committer's sessions are its own: one opened after close() would
    never be closed."""
    store = await EventStore.open(dsn, schema)
    try:
        await store.append([event(uuid4(), 1)])
    finally:
        await store.close()
    try:
        with pytest.raises(StoreUnavailable):
            await store.append([event(uuid4(), 1)])
        assert store._committer._idle == []
    finally:
        await drop_schema(dsn, schema)


async def test_batch_sizes_count_every_append_once(store: EventStore) -> None:
    """The committer's batch-size counts (for metrics and bench/appends.py)
    add up to the appends it sent; concurrent appends share batches."""
    store.append_batch_sizes.clear()
    streams = [uuid4() for _ in range(8)]
    await asyncio.gather(*(store.append([event(s, 1)]) for s in streams))
    await store.append([event(streams[0], 2)])
    sizes = store.append_batch_sizes
    assert sum(size * n for size, n in sizes.items()) == 9
    assert sum(sizes.values()) < 9


@pytest.fixture
async def lingering(
    dsn: str, store: EventStore
) -> AsyncIterator[Callable[[Linger], GroupCommitter]]:
    """Committers on the test's store with a linger of the test's own."""
    made: list[GroupCommitter] = []

    def make(linger: Linger) -> GroupCommitter:
        committer = GroupCommitter(lambda: connect(dsn, store.schema), store.channel, linger=linger)
        made.append(committer)
        return committer

    yield make
    for committer in made:
        await committer.close()


def one(stream: UUID, version: int) -> AppendRequest:
    return AppendRequest([event(stream, version)])


async def shared_batch(committer: GroupCommitter) -> tuple[UUID, UUID]:
    """Two appends that go as one batch (nothing was shared before them, so
    they do not wait): what makes the committer hold the next batch back."""
    a, b = uuid4(), uuid4()
    await asyncio.gather(committer.submit(one(a, 1)), committer.submit(one(b, 1)))
    assert committer.batch_sizes == {2: 1}
    return a, b


async def held_back(committer: GroupCommitter) -> tuple[asyncio.Future[AppendResult], UUID]:
    """After a shared batch, one more append, and every chance for the
    committer to take it as a batch of its own; it must still be waiting."""
    a, b = await shared_batch(committer)
    waiting = committer.submit(one(a, 2))
    for _ in range(20):
        await asyncio.sleep(0)
    assert committer.batch_sizes == {2: 1}
    assert not waiting.done()
    return waiting, b


async def test_after_a_shared_batch_the_next_waits_for_enough_appends(
    lingering: Callable[[Linger], GroupCommitter],
) -> None:
    committer = lingering(Linger(seconds=600, enough=3))
    first, b = await held_back(committer)
    rest = [committer.submit(one(b, 2)), committer.submit(one(uuid4(), 1))]
    async with asyncio.timeout(30):
        results = await asyncio.gather(first, *rest)
    assert committer.batch_sizes == {2: 1, 3: 1}
    assert sorted(r.positions[0] for r in results) == [3, 4, 5]


async def test_appends_that_come_one_at_a_time_never_wait(
    lingering: Callable[[Linger], GroupCommitter],
) -> None:
    committer = lingering(Linger(seconds=600, enough=16))
    stream = uuid4()
    async with asyncio.timeout(30):  # a wait would take ten minutes
        for version in range(1, 4):
            await committer.submit(one(stream, version))
    assert committer.batch_sizes == {1: 3}


async def test_the_wait_ends_after_its_time(
    lingering: Callable[[Linger], GroupCommitter],
) -> None:
    committer = lingering(Linger(seconds=0.05, enough=16))
    a, _ = await shared_batch(committer)
    async with asyncio.timeout(30):
        result = await committer.submit(one(a, 2))
    assert result.positions == (3,)
    assert committer.batch_sizes == {2: 1, 1: 1}


async def test_closing_ends_the_wait_and_sends_what_waited(
    lingering: Callable[[Linger], GroupCommitter],
) -> None:
    committer = lingering(Linger(seconds=600, enough=16))
    waiting, _ = await held_back(committer)
    async with asyncio.timeout(30):
        await committer.close()
        result = await waiting
    assert result.positions == (3,)

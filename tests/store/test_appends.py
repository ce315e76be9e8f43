"""Appends: optimistic concurrency, idempotency, atomicity and group commit."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

import pytest

from service.store.errors import (
    DuplicateEvent,
    IdempotencyConflict,
    TrackingConflict,
    VersionConflict,
)
from service.store.eventstore import EventStore
from service.store.records import NewEvent, Tracking
from tests.support.database import drop_schema

pytestmark = pytest.mark.db


def event(stream: UUID, version: int, payload: bytes = b"{}", topic: str = "t") -> NewEvent:
    return NewEvent(stream, version, topic, payload)


async def test_new_stream_then_next_version(store: EventStore) -> None:
    stream = uuid4()
    first = await store.append([event(stream, 1), event(stream, 2)])
    second = await store.append([event(stream, 3)])
    assert first.positions == (1, 2)
    assert second.positions == (3,)
    assert [r.version for r in await store.read_stream(stream)] == [1, 2, 3]


async def test_stale_version_is_a_typed_conflict_and_stores_nothing(store: EventStore) -> None:
    stream = uuid4()
    await store.append([event(stream, 1)])
    with pytest.raises(VersionConflict) as caught:
        await store.append([event(stream, 1, b'{"other": true}'), event(stream, 2)])
    assert caught.value.current_version == 1
    assert caught.value.attempted_version == 1
    assert len(await store.read_stream(stream)) == 1
    assert await store.max_position() == 1


async def test_gap_in_versions_is_refused(store: EventStore) -> None:
    stream = uuid4()
    await store.append([event(stream, 1)])
    with pytest.raises(VersionConflict):
        await store.append([event(stream, 3)])
    with pytest.raises(VersionConflict):
        await store.append([event(stream, 2), event(stream, 2)])


async def test_concurrent_writers_of_one_version_exactly_one_wins(store: EventStore) -> None:
    stream = uuid4()
    await store.append([event(stream, 1)])
    for version in range(2, 7):
        attempts = [
            store.append([event(stream, version, f'{{"writer": {w}}}'.encode())]) for w in range(20)
        ]
        outcomes = await asyncio.gather(*attempts, return_exceptions=True)
        winners = [o for o in outcomes if not isinstance(o, BaseException)]
        losers = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(winners) == 1
        assert all(isinstance(e, VersionConflict) for e in losers)
    versions = [r.version for r in await store.read_stream(stream)]
    assert versions == [1, 2, 3, 4, 5, 6]


async def test_concurrent_writers_on_separate_store_instances(dsn: str, schema: str) -> None:
    """Two stores are two pools, as two service processes would have: the
    database, not a process-local lock, decides who wins."""
    one = await EventStore.open(dsn, schema)
    two = await EventStore.open(dsn, schema)
    try:
        stream = uuid4()
        await one.append([event(stream, 1)])
        outcomes = await asyncio.gather(
            *[(one if i % 2 else two).append([event(stream, 2)]) for i in range(10)],
            return_exceptions=True,
        )
        assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
        many = [uuid4() for _ in range(30)]
        results = await asyncio.gather(
            *[(one if i % 2 else two).append([event(s, 1)]) for i, s in enumerate(many)]
        )
        positions = sorted(p for r in results for p in r.positions)
        assert positions == list(range(3, 33))
    finally:
        await one.close()
        await two.close()
        await drop_schema(dsn, schema)


async def test_one_conflict_in_a_batch_fails_only_its_request(store: EventStore) -> None:
    taken = uuid4()
    await store.append([event(taken, 1)])
    fresh = [uuid4() for _ in range(15)]
    outcomes = await asyncio.gather(
        store.append([event(taken, 1)]),
        *[store.append([event(s, 1)]) for s in fresh],
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], VersionConflict)
    assert all(not isinstance(o, BaseException) for o in outcomes[1:])
    for stream in fresh:
        assert len(await store.read_stream(stream)) == 1


async def test_reused_event_id_fails_only_its_request(store: EventStore) -> None:
    existing = event(uuid4(), 1)
    await store.append([existing])
    duplicate = NewEvent(uuid4(), 1, "t", b"{}", {}, existing.event_id)
    others = [uuid4() for _ in range(5)]
    outcomes = await asyncio.gather(
        *[store.append([event(s, 1)]) for s in others[:2]],
        store.append([duplicate, event(duplicate.stream_id, 2)]),
        *[store.append([event(s, 1)]) for s in others[2:]],
        return_exceptions=True,
    )
    assert isinstance(outcomes[2], DuplicateEvent)
    assert all(not isinstance(o, BaseException) for i, o in enumerate(outcomes) if i != 2)
    assert await store.read_stream(duplicate.stream_id) == []


async def test_idempotent_retry_returns_original_result_and_stores_nothing(
    store: EventStore,
) -> None:
    stream = uuid4()
    first = await store.append([event(stream, 1, b'{"a": 1}')], idempotency_key="k-1")
    again = await store.append([event(stream, 1, b'{"a": 1}')], idempotency_key="k-1")
    assert again.positions == first.positions
    assert again.recorded_at == first.recorded_at
    assert again.replayed and not first.replayed
    assert await store.max_position() == 1


async def test_idempotency_key_with_other_payload_is_a_typed_error(store: EventStore) -> None:
    stream = uuid4()
    await store.append([event(stream, 1, b'{"a": 1}')], idempotency_key="k-2")
    with pytest.raises(IdempotencyConflict):
        await store.append([event(stream, 2, b'{"a": 2}')], idempotency_key="k-2")
    assert len(await store.read_stream(stream)) == 1


async def test_concurrent_retries_with_one_key_store_once(store: EventStore) -> None:
    stream = uuid4()
    results = await asyncio.gather(
        *[store.append([event(stream, 1, b"same")], idempotency_key="k-3") for _ in range(10)]
    )
    assert {r.positions for r in results} == {(1,)}
    assert len(await store.read_stream(stream)) == 1


async def test_retry_with_same_event_ids_is_recognised(store: EventStore) -> None:
    """What a retry after a lost connection looks like to the store."""
    stream = uuid4()
    events = [event(stream, 1), event(stream, 2)]
    first = await store.append(events)
    retry = await store.append(events)
    assert retry.replayed and retry.positions == first.positions
    assert len(await store.read_stream(stream)) == 2


async def test_events_and_checkpoint_commit_together(store: EventStore) -> None:
    stream = uuid4()
    await store.append([event(stream, 1)], tracking=Tracking("upstream", 5))
    assert await store.tracking_position("upstream") == 5
    with pytest.raises(TrackingConflict):
        await store.append([event(stream, 2)], tracking=Tracking("upstream", 5))
    assert len(await store.read_stream(stream)) == 1
    with pytest.raises(VersionConflict):
        await store.append([event(stream, 1)], tracking=Tracking("upstream", 6))
    assert await store.tracking_position("upstream") == 5


async def test_checkpoints_only_move_forward(store: EventStore) -> None:
    await store.insert_tracking(Tracking("projection", 10))
    with pytest.raises(TrackingConflict):
        await store.insert_tracking(Tracking("projection", 9))
    async with store.transaction() as conn:
        await store.advance_tracking(conn, Tracking("projection", 12))
    assert await store.tracking_position("projection") == 12


async def test_checkpoint_rolls_back_with_its_transaction(store: EventStore) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with store.transaction() as conn:
            await store.advance_tracking(conn, Tracking("projection", 3))
            raise Boom
    assert await store.tracking_position("projection") is None


async def test_multi_stream_append_is_atomic(store: EventStore) -> None:
    a, b = uuid4(), uuid4()
    await store.append([event(b, 1)])
    with pytest.raises(VersionConflict) as caught:
        await store.append([event(a, 1), event(b, 1)])
    assert caught.value.stream_id == b
    assert await store.read_stream(a) == []
    result = await store.append([event(a, 1), event(b, 2), event(a, 2)])
    assert len(result.positions) == 3

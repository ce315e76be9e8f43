"""Reading streams and the global log, and detecting tampering with the chain."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

import asyncpg
import pytest

from service.store.eventstore import EventStore
from service.store.records import NewEvent

pytestmark = pytest.mark.db


async def _stream_of(store: EventStore, n: int) -> UUID:
    stream = uuid4()
    for version in range(1, n + 1):
        await store.append(
            [NewEvent(stream, version, f"topic-{version % 2}", f'{{"v": {version}}}'.encode())]
        )
    return stream


async def test_read_stream_slices(store: EventStore) -> None:
    stream = await _stream_of(store, 5)
    assert [r.version for r in await store.read_stream(stream, from_version=2, to_version=4)] == [
        2,
        3,
        4,
    ]
    assert await store.stream_version(stream) == 5
    assert await store.stream_version(uuid4()) is None


async def test_read_stream_as_of_a_recorded_time(store: EventStore) -> None:
    stream = await _stream_of(store, 2)
    middle = (await store.read_stream(stream))[-1].recorded_at
    await asyncio.sleep(0.01)
    await store.append([NewEvent(stream, 3, "t", b"{}")])
    assert [r.version for r in await store.read_stream(stream, as_of=middle)] == [1, 2]


async def test_metadata_round_trips(store: EventStore) -> None:
    stream = uuid4()
    meta = {"actor": {"id": "m-1", "role": "mentee"}, "source": "hr-system", "n": 1}
    await store.append([NewEvent(stream, 1, "t", b"\x00\xffbinary", meta)])
    (record,) = await store.read_stream(stream)
    assert record.metadata == meta
    assert record.payload == b"\x00\xffbinary"


async def test_global_log_in_commit_order_with_filters(store: EventStore) -> None:
    streams = [await _stream_of(store, 3) for _ in range(3)]
    log = await store.read_log(0, 100)
    assert [r.position for r in log] == list(range(1, 10))
    assert [r.stream_id for r in log[:3]] == [streams[0]] * 3
    assert [r.position for r in await store.read_log(4, 2)] == [5, 6]
    assert [r.position for r in await store.read_log(0, 100, until=3)] == [1, 2, 3]
    assert all(r.topic == "topic-0" for r in await store.read_log(0, 100, ["topic-0"]))
    assert await store.max_position() == 9
    assert await store.stream_ids() == sorted(streams)
    assert await store.stream_ids(sorted(streams)[0], 1) == [sorted(streams)[1]]


async def test_verify_accepts_an_untouched_stream(store: EventStore) -> None:
    stream = await _stream_of(store, 4)
    result = await store.verify_stream(stream)
    assert result.valid and result.checked == 4 and result.first_invalid_version is None


async def _tamper(store: EventStore, sql: str, *args: object) -> None:
    async with store.pool.acquire() as conn:
        await conn.execute(sql, *args)


async def test_verify_names_a_byte_altered_in_the_table(store: EventStore) -> None:
    stream = await _stream_of(store, 5)
    await _tamper(
        store,
        "UPDATE events SET payload = set_byte(payload, 2, get_byte(payload, 2) # 1)"
        " WHERE stream_id = $1 AND version = 3",
        stream,
    )
    result = await store.verify_stream(stream)
    assert not result.valid and result.first_invalid_version == 3


async def test_verify_names_altered_metadata(store: EventStore) -> None:
    stream = await _stream_of(store, 3)
    await _tamper(
        store,
        'UPDATE events SET metadata = \'{"source": "forged"}\' WHERE stream_id = $1'
        " AND version = 2",
        stream,
    )
    assert (await store.verify_stream(stream)).first_invalid_version == 2


async def test_verify_names_a_deleted_event(store: EventStore) -> None:
    stream = await _stream_of(store, 5)
    await _tamper(store, "DELETE FROM events WHERE stream_id = $1 AND version = 2", stream)
    result = await store.verify_stream(stream)
    assert not result.valid and result.first_invalid_version == 2
    assert await store.missing_positions() == [2]


async def test_verify_names_swapped_events(store: EventStore) -> None:
    stream = await _stream_of(store, 5)
    await _tamper(
        store,
        "UPDATE events e SET payload = o.payload, topic = o.topic FROM events o"
        " WHERE e.stream_id = $1 AND o.stream_id = $1"
        " AND (e.version, o.version) IN ((3, 4), (4, 3))",
        stream,
    )
    result = await store.verify_stream(stream)
    assert not result.valid and result.first_invalid_version == 3


async def test_verify_names_a_rewritten_chain_hash(store: EventStore) -> None:
    stream = await _stream_of(store, 3)
    await _tamper(
        store,
        "UPDATE events SET chain_hash = sha256('forged') WHERE stream_id = $1 AND version = 1",
        stream,
    )
    assert (await store.verify_stream(stream)).first_invalid_version == 1


async def test_the_table_itself_refuses_a_duplicate_version(store: EventStore) -> None:
    """The unique constraint is the last line of defence behind mf_append."""
    stream = await _stream_of(store, 1)
    with pytest.raises(asyncpg.UniqueViolationError):
        await _tamper(
            store,
            "INSERT INTO events (position, stream_id, version, event_id, topic, payload,"
            " recorded_at, chain_hash) VALUES (999, $1, 1, gen_random_uuid(), 't', '', now(), '')",
            stream,
        )

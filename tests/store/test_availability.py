"""When the database goes away, calls fail fast with a typed error, and work
again once it is back, without restarting anything."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from uuid import uuid4

import pytest

from service.store.errors import StoreUnavailable
from service.store.eventstore import EventStore
from service.store.records import NewEvent
from tests.support.disposable_postgres import DisposablePostgres

pytestmark = pytest.mark.db


@pytest.fixture
def postgres() -> Iterator[DisposablePostgres]:
    server = DisposablePostgres("availability")
    try:
        yield server
    finally:
        server.destroy()


async def test_unavailable_then_recovers(postgres: DisposablePostgres) -> None:
    store = await EventStore.open(postgres.url, "mentorflow")
    stream = uuid4()
    try:
        await store.append([NewEvent(stream, 1, "t", b"{}")])
        async with store.subscribe(after=0, poll_interval=0.1) as subscription:
            assert (await asyncio.wait_for(anext(subscription), 5)).version == 1

            await asyncio.to_thread(postgres.stop)
            with pytest.raises(StoreUnavailable):
                await asyncio.wait_for(store.append([NewEvent(stream, 2, "t", b"{}")]), 30)
            with pytest.raises(StoreUnavailable):
                await asyncio.wait_for(store.read_stream(stream), 30)
            assert not await store.ping()

            await asyncio.to_thread(postgres.start)
            assert await store.ping()
            result = await store.append([NewEvent(stream, 2, "t", b"{}")])
            assert result.positions == (2,)
            assert [r.version for r in await store.read_stream(stream)] == [1, 2]
            received = await asyncio.wait_for(anext(subscription), 10)
            assert received.version == 2
    finally:
        await store.close()

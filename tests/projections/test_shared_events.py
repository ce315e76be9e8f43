"""The live projections of a process are given one ProjectedEvent per record:
its metadata read and its payload decoded once, whatever the number of
projections; a record read again with another data key (after an erasure)
is decoded again."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

from domain.samples import walk_to
from projections import ProjectedEvent, Projection
from service.projection_runner import ProjectionRunner
from service.projection_runner.running import YIELD_EVERY
from service.relationships.repository import RelationshipRepository
from service.store.eventstore import EventStore
from tests.projections.support import save_all

pytestmark = pytest.mark.db


class Recording(Projection):
    """Decodes every event ahead, and keeps the objects it was handed."""

    tables = ()

    def __init__(self, name: str) -> None:
        self.name = name  # type: ignore[misc]  # a ClassVar elsewhere; two instances here
        self.seen: dict[int, ProjectedEvent] = {}

    def prepare(self, event: ProjectedEvent) -> None:
        event.event  # noqa: B018 - decoded now, cached on the event

    async def handle(self, conn: asyncpg.Connection, batch: Sequence[ProjectedEvent]) -> None:
        for event in batch:
            self.seen[event.position] = event


def counting_decoder(repository: RelationshipRepository, calls: list[int]) -> Any:
    def decode(record: Any) -> Any:
        calls.append(record.position)
        return repository.decode(record).event

    return decode


async def test_two_live_projections_share_each_event_and_its_decoding(
    store: EventStore, dsn: str, repository: RelationshipRepository
) -> None:
    first, second = Recording("recording_one"), Recording("recording_two")
    calls: list[int] = []
    runner = ProjectionRunner(
        store,
        dsn,
        counting_decoder(repository, calls),
        [first, second],
        poll_interval=0.05,
        takeover_interval=0.05,
        min_interval=0.0,
    )
    await runner.start()
    try:
        last = await save_all(repository, [walk_to("cultivation"), walk_to("identification")])
        assert await runner.wait_until_projected(None, last, 30), await runner.lag()
    finally:
        await runner.stop()
    assert set(first.seen) == set(second.seen) == set(range(1, last + 1))
    assert all(first.seen[p] is second.seen[p] for p in first.seen)
    assert sorted(calls) == list(range(1, last + 1))  # each payload decoded once


async def test_a_record_read_again_with_another_data_key_is_decoded_again(
    store: EventStore, dsn: str, repository: RelationshipRepository
) -> None:
    runner = ProjectionRunner(store, dsn, lambda record: repository.decode(record).event, [])
    await save_all(repository, [walk_to("identification")])
    record = dataclasses.replace((await store.read_log(0, 1))[0], data_key=b"a wrapped key")
    shared = runner._shared(record)
    assert runner._shared(dataclasses.replace(record)) is shared  # the same record read again
    erased = runner._shared(dataclasses.replace(record, data_key=None))  # its key destroyed
    assert erased is not shared and erased.position == shared.position


class Batches(Projection):
    """Keeps the size of every batch it is handed."""

    name = "recording_batches"
    tables = ()

    def __init__(self) -> None:
        self.sizes: list[int] = []

    async def handle(self, conn: asyncpg.Connection, batch: Sequence[ProjectedEvent]) -> None:
        self.sizes.append(len(batch))


async def test_a_page_read_at_once_is_committed_as_one_batch(
    store: EventStore, dsn: str, repository: RelationshipRepository
) -> None:
    """The reader prepares a page in chunks (letting requests in between) but
    queues it whole: a transaction per page, not one per chunk."""
    last = await save_all(repository, [walk_to("cultivation") for _ in range(5)])
    assert last > 2 * YIELD_EVERY
    batches = Batches()
    runner = ProjectionRunner(
        store,
        dsn,
        lambda record: repository.decode(record).event,
        [batches],
        poll_interval=0.05,
        takeover_interval=0.05,
    )
    await runner.start()
    try:
        assert await runner.wait_until_projected(None, last, 30), await runner.lag()
    finally:
        await runner.stop()
    assert batches.sizes == [last]

"""Erasure in the store: data keys, the trigger that destroys a key with the
append of ``personal_data.erased``, snapshots, stale writers in other
processes, read models incremental and rebuilt, and the hash chains."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID, uuid4

import pytest

from domain import (
    ERASED,
    Actor,
    Envelope,
    Relationship,
    create_cipher_key,
    event_data,
    make_mapper,
    take_snapshot,
)
from domain.samples import Clock, walk_to
from projections import RelationshipSummaries, Timeline
from service.relationships.application import Application, ErasureUnavailable
from service.relationships.codec import EventCodec
from service.relationships.repository import RelationshipRepository
from service.store.errors import VersionConflict
from service.store.eventstore import EventStore
from tests.projections.support import dump, runner_for

pytestmark = pytest.mark.db

KEY = create_cipher_key()
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def envelope() -> Envelope:
    return Envelope(occurred_at=NOW, actor=Actor("admin-1", "program_admin"), source="t")


def repository_on(store: EventStore, **options: Any) -> RelationshipRepository:
    return RelationshipRepository(store, EventCodec(KEY), **options)


async def _fetch(store: EventStore, sql: str, *args: Any) -> list[Any]:
    rows: list[Any] = await store.with_connection(lambda conn: conn.fetch(sql, *args))
    return rows


async def _payloads(store: EventStore, stream: UUID) -> bytes:
    rows = await _fetch(store, "SELECT payload FROM events WHERE stream_id = $1", stream)
    return b"".join(bytes(r["payload"]) for r in rows)


async def test_keys_are_made_once_and_destroyed_with_the_erasure(store: EventStore) -> None:
    repository = repository_on(store, snapshot_every=3)
    relationship = named("cultivation", "Ada Lovelace")
    opened_name = "Ada Lovelace"
    await repository.save(relationship)
    stream = relationship.id
    keys = await _fetch(store, "SELECT * FROM data_keys WHERE stream_id = $1", stream)
    assert len(keys) == 1 and keys[0]["wrapped_key"] and keys[0]["erased_at"] is None
    assert opened_name.encode() not in await _payloads(store, stream)
    await repository.save(_more_events(await repository.load_for_update(stream)))
    snapshots = await _fetch(store, "SELECT version FROM snapshots WHERE stream_id = $1", stream)
    assert snapshots, "snapshots are taken (and must go with the erasure)"
    chain_before = await _fetch(
        store, "SELECT version, payload, chain_hash FROM events WHERE stream_id = $1", stream
    )

    application = Application(repository)
    erased = await application.erase(stream, {"reason": "request 1"}, envelope())
    assert erased.event.api_type == "personal_data.erased"
    keys = await _fetch(store, "SELECT * FROM data_keys WHERE stream_id = $1", stream)
    assert keys[0]["wrapped_key"] is None and keys[0]["erased_at"] is not None
    assert not await _fetch(store, "SELECT 1 FROM snapshots WHERE stream_id = $1", stream)
    chain_after = await _fetch(
        store, "SELECT version, payload, chain_hash FROM events WHERE stream_id = $1", stream
    )
    assert chain_after[: len(chain_before)] == chain_before, "stored bytes unchanged"
    assert (await store.verify_stream(stream)).valid

    loaded = await repository.load(stream)
    assert loaded is not None and loaded.erased and loaded.mentee_name == ERASED
    assert loaded.phase == "cultivation" and loaded.goals[0].statement == ERASED
    older = await repository.load(stream, version=3)
    assert older is not None and older.mentee_name == ERASED
    again = await application.erase(stream, {"reason": "another"}, envelope())
    assert again.event_id == erased.event_id
    assert await store.stream_version(stream) == erased.event.originator_version


async def test_a_writer_with_a_stale_state_never_stores_clear_text_after_an_erasure(
    store: EventStore,
) -> None:
    here, elsewhere = repository_on(store), repository_on(store)  # two processes
    relationship = walk_to("cultivation")
    await here.save(relationship)
    stale = await elsewhere.load_for_update(relationship.id)
    assert stale is not None
    await Application(here).erase(relationship.id, {"reason": "r"}, envelope())

    stale.record(
        "goal.progressed",
        {"goal_id": stale.goals[0].id, "status": "on_track", "note": "N0TE"},
        envelope(),
    )
    with pytest.raises(VersionConflict):
        await elsewhere.save(stale)  # its cached state (and key) are dropped
    application = Application(elsewhere)
    data = {"goal_id": stale.goals[0].id, "status": "on_track", "note": "N0TE"}
    saved = await application.post_event(relationship.id, "goal.progressed", data, envelope())
    progressed = saved.events[-1].event
    assert isinstance(progressed, Relationship.GoalProgressed) and progressed.note == ERASED
    assert b"N0TE" not in await _payloads(store, relationship.id)


async def test_an_event_kept_in_memory_is_not_handed_out_once_its_key_is_gone(
    store: EventStore,
) -> None:
    """The repository hands the events it saved back to readers of its process
    without decoding them, but only while the record's data key is there: once
    another process erased the relationship, its records read as "[erased]"
    here too. An erasure made here drops the events it kept."""
    here, elsewhere = repository_on(store), repository_on(store)  # two processes
    relationship = named("cultivation", "Ada Lovelace")
    saved = await here.save(relationship)
    before = await store.read_log(0, 1000)
    opened = here.decode(before[0]).event
    assert opened is saved.events[0].event
    assert isinstance(opened, Relationship.Opened) and opened.mentee_name == "Ada Lovelace"

    await Application(elsewhere).erase(relationship.id, {"reason": "r"}, envelope())
    after = await store.read_log(0, 1000)
    assert after[0].data_key is None
    erased = here.decode(after[0]).event
    assert isinstance(erased, Relationship.Opened) and erased.mentee_name == ERASED

    other = named("cultivation", "Grace Hopper")
    kept = await here.save(other)
    first = kept.events[0].position
    record = next(r for r in await store.read_log(first - 1, 1) if r.position == first)
    assert here.decode(record).event is kept.events[0].event
    await Application(here).erase(other.id, {"reason": "r"}, envelope())
    assert here.decode(record).event is not kept.events[0].event


async def test_erasure_needs_a_cipher_key(store: EventStore) -> None:
    repository = RelationshipRepository(store, EventCodec(None))
    relationship = named("reflection", "Ada")
    await repository.save(relationship)
    with pytest.raises(ErasureUnavailable):
        await Application(repository).erase(relationship.id, {"reason": "r"}, envelope())
    assert not await _fetch(store, "SELECT 1 FROM data_keys")
    plain = RelationshipRepository(store, make_mapper())
    loaded = await plain.load(relationship.id)  # stored exactly as the previous release did
    assert loaded is not None and loaded.mentee_name == relationship.mentee_name


async def test_events_of_the_previous_release_read_on_with_field_sealing(store: EventStore) -> None:
    previous = RelationshipRepository(store, make_mapper(cipher_key=KEY, compress=True))
    relationship = named("cultivation", "Ada")
    await previous.save(relationship)
    current = RelationshipRepository(store, EventCodec(KEY, compress=True))
    loaded = await current.load(relationship.id)
    assert loaded is not None and loaded.mentee_name == relationship.mentee_name
    await current.save(_more_events(loaded))  # new events sealed beside the old ones
    reloaded = await current.load(relationship.id)
    assert reloaded is not None and reloaded.version == loaded.version


async def test_read_models_are_scrubbed_incrementally_and_identically_on_rebuild(
    store: EventStore, dsn: str
) -> None:
    repository = repository_on(store)
    first, second = named("cultivation", "First"), named("establishment", "Second")
    for relationship in (first, second):
        await repository.save(relationship)
    projections = [RelationshipSummaries(), Timeline()]
    runner = runner_for(store, dsn, repository, projections)
    await runner.start()
    try:
        saved = await Application(repository).erase(first.id, {"reason": "r"}, envelope())
        assert await runner.wait_until_projected(None, saved.position, timeout=30)
        incremental = await dump(store, projections)
        names = {row[0]: row for row in incremental["relationship_summaries"]}
        assert ERASED in names[str(first.id)] and second.mentee_name in names[str(second.id)]
        for projection in projections:
            await runner.rebuild(projection.name, timeout=30)
        assert await dump(store, projections) == incremental
    finally:
        await runner.stop()


def named(phase: Any, name: str) -> Relationship:
    """Like ``walk_to``, the mentee named."""
    clock = Clock()
    relationship = Relationship.open(
        {"mentee_id": "mentee-1", "mentee_name": name}, clock.envelope("mentee-1")
    )
    for pending in walk_to(phase).collect_events()[1:]:
        event = cast(Relationship.Event, pending)
        data = {k: v for k, v in event_data(event).items() if k != "version"}
        relationship.record(event.api_type, data, clock.envelope("mentee-1"))
    return relationship


def _more_events(relationship: Relationship | None) -> Relationship:
    assert relationship is not None
    for index in range(4):
        relationship.record(
            "meeting.held",
            {"held_at": "2026-02-10T15:00:00Z", "notes": f"notes {index}"},
            envelope(),
        )
    return relationship


async def test_no_snapshot_is_kept_for_an_erased_relationship(store: EventStore) -> None:
    repository = repository_on(store)
    relationship = named("cultivation", "Ada")
    await repository.save(relationship)
    taken_before = repository.mapper.to_stored_event(take_snapshot(relationship))
    await Application(repository).erase(relationship.id, {"reason": "r"}, envelope())
    await repository.snapshots.save(taken_before)  # a writer elsewhere, late
    assert not await _fetch(store, "SELECT 1 FROM snapshots WHERE stream_id = $1", relationship.id)
    other = named("reflection", "Grace")
    await repository.save(other)
    await repository.snapshots.save(repository.mapper.to_stored_event(take_snapshot(other)))
    assert await _fetch(store, "SELECT 1 FROM snapshots WHERE stream_id = $1", other.id)


async def test_writers_racing_for_a_new_relationship_share_one_key(store: EventStore) -> None:
    stream = uuid4()
    writers = [repository_on(store) for _ in range(8)]
    keys = await asyncio.gather(*(w._write_key(stream) for w in writers))
    rows = await _fetch(store, "SELECT wrapped_key FROM data_keys WHERE stream_id = $1", stream)
    assert len(rows) == 1
    nonce = b"\x00" * 12
    sealed = {key.encrypt(nonce, b"x", None) for key in keys if key is not None}
    assert len(sealed) == 1 and len(keys) == 8, "every writer seals with the same key"

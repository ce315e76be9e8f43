"""Saving relationships through the store and loading them back at any version."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from domain import Envelope, Relationship, create_cipher_key, rebuild, relationship_view
from domain.samples import long_history, walk_to
from service.platform.settings import Settings
from service.relationships.codec import codec_for, mapper_for
from service.relationships.repository import RelationshipRepository
from service.store.errors import VersionConflict
from service.store.eventstore import EventStore

pytestmark = pytest.mark.db

CODECS = {
    "plain": Settings(),
    "zlib": Settings(compress=True),
    "aes": Settings(cipher_key=create_cipher_key()),
    "aes+zlib": Settings(cipher_key=create_cipher_key(), compress=True),
}


@pytest.fixture(params=list(CODECS))
async def repository(request: Any, store: EventStore) -> AsyncIterator[RelationshipRepository]:
    yield RelationshipRepository(store, mapper_for(CODECS[request.param]), snapshot_every=10)


def _states(relationship: Relationship) -> dict[str, Any]:
    return relationship_view(relationship)


async def test_save_and_load_latest(repository: RelationshipRepository) -> None:
    relationship = walk_to("cultivation")
    expected = _states(relationship)
    saved = await repository.save(relationship)
    assert [r.event.originator_version for r in saved.events] == list(
        range(1, relationship.version + 1)
    )
    loaded = await repository.load(relationship.id)
    assert loaded is not None
    assert _states(loaded) == expected


async def test_load_every_version_equals_replay_without_snapshots(
    repository: RelationshipRepository,
) -> None:
    relationship = long_history(45)
    history = list(relationship.pending_events)
    await repository.save(relationship)
    assert await repository.snapshots.latest(relationship.id) is not None
    for version in range(1, relationship.version + 1):
        loaded = await repository.load(relationship.id, version=version)
        replayed = rebuild(history, version=version)
        assert loaded is not None and replayed is not None
        assert loaded.version == version
        assert _states(loaded) == _states(replayed)


async def test_load_as_of_a_recorded_time(repository: RelationshipRepository) -> None:
    relationship = walk_to("identification")
    await repository.save(relationship)
    before_more = (await repository.store.read_stream(relationship.id))[-1].recorded_at
    await asyncio.sleep(0.01)
    later = await repository.load(relationship.id)
    assert later is not None
    later.record("concern.raised", {"category": "other", "severity": "low"}, _envelope())
    await repository.save(later)
    then = await repository.load(relationship.id, as_of=before_more)
    assert then is not None and then.version == relationship.version
    assert await repository.load(relationship.id, as_of=before_more.replace(year=2000)) is None


async def test_unknown_relationship_loads_as_none(repository: RelationshipRepository) -> None:
    assert await repository.load(uuid4()) is None


async def test_stale_aggregate_cannot_overwrite(repository: RelationshipRepository) -> None:
    relationship = walk_to("identification")
    await repository.save(relationship)
    first = await repository.load(relationship.id)
    second = await repository.load(relationship.id)
    assert first is not None and second is not None
    first.record("concern.raised", {"category": "other", "severity": "low"}, _envelope())
    second.record("concern.raised", {"category": "bias", "severity": "high"}, _envelope())
    await repository.save(first)
    with pytest.raises(VersionConflict):
        await repository.save(second)


async def test_envelope_is_stored_in_clear_without_confidential_fields(
    repository: RelationshipRepository,
) -> None:
    relationship = walk_to("reflection")
    relationship.record(
        "reflection.recorded",
        {"author_role": "mentee", "kind": "interim", "notes": "very private"},
        _envelope(),
    )
    await repository.save(relationship)
    records = await repository.store.read_stream(relationship.id)
    last = records[-1]
    assert last.metadata["type"] == "reflection.recorded"
    assert last.metadata["source"] == "tests"
    assert "very private" not in repr(last.metadata)
    encrypted = repository.mapper.cipher is not None
    assert (b"very private" in last.payload) is (not encrypted and not repository.mapper.compressor)


def _envelope() -> Envelope:
    return Envelope(
        occurred_at=datetime.now(UTC),
        actor=None,
        source="tests",
        correlation_id=None,
        causation_id=None,
    )


@pytest.mark.parametrize("settings", list(CODECS.values()), ids=list(CODECS))
async def test_events_saved_here_are_read_back_as_saved(
    store: EventStore, settings: Settings
) -> None:
    """A record of an event this repository saved is handed back as the event
    it saved (no decoding: what the live projections of its process read); one
    saved by another process is decoded, and equals it."""
    here = RelationshipRepository(store, codec_for(settings))
    elsewhere = RelationshipRepository(store, codec_for(settings))
    relationship = walk_to("cultivation")
    saved = await here.save(relationship)
    records = await store.read_log(0, 1000)
    assert [r.position for r in records] == [s.position for s in saved.events]
    for record, recorded in zip(records, saved.events, strict=True):
        assert here.decode(record).event is recorded.event
        decoded = elsewhere.decode(record).event
        assert decoded is not recorded.event
        assert decoded == recorded.event
    other = walk_to("establishment")
    await elsewhere.save(other)
    for record in await store.read_log(records[-1].position, 1000):
        assert here.decode(record).event == elsewhere.decode(record).event

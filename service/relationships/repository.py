"""Relationships in the event store: saving their new events, loading any version.

The events are the truth; snapshots (every SNAPSHOT_EVERY events) only make
loading fast, so loading a version costs one snapshot plus fewer than
SNAPSHOT_EVERY events, whatever the length of the history.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import Mapper, StoredEvent

from domain import Relationship, event_metadata, rebuild, take_snapshot
from service.relationships.codec import Codec, EventCodec, MapperCodec
from service.store.errors import StoreError
from service.store.eventstore import EventStore
from service.store.records import AppendResult, NewEvent, StoredRecord
from service.store.snapshots import SnapshotStore

log = logging.getLogger(__name__)

SNAPSHOT_EVERY = 100
CACHED_RELATIONSHIPS = 10_000
CACHED_PROGRAMS = 100_000
RECENT_EVENTS = 4_096
"""Events this process saved lately, kept to be handed to whoever reads them
back (the live projections, a tenth of a second later) instead of decoding
them: two seconds of the log at 2,000 events/s, in about 5 MB (1.2 KB an
event with its payload, for a ``meeting.held``)."""

_RECORD_PROGRAM = (
    "INSERT INTO relationship_programs (stream_id, program_id) VALUES ($1, $2)"
    " ON CONFLICT (stream_id) DO NOTHING"
)
_PROGRAM_OF = "SELECT program_id FROM relationship_programs WHERE stream_id = $1"
_KEY_FOR_WRITING = (  # one round trip: the key made now, or the one already there
    "WITH made AS (INSERT INTO data_keys (stream_id, wrapped_key) VALUES ($1, $2)"
    " ON CONFLICT (stream_id) DO NOTHING RETURNING wrapped_key, true AS made)"
    " SELECT wrapped_key, made FROM made"
    " UNION ALL SELECT wrapped_key, false FROM data_keys WHERE stream_id = $1"
)
_KEY_OF = "SELECT wrapped_key FROM data_keys WHERE stream_id = $1"


@dataclass(frozen=True)
class RecordedEvent:
    """A domain event with where and when the store put it."""

    event: Relationship.Event
    event_id: UUID
    position: int
    recorded_at: datetime


@dataclass(frozen=True)
class Saved:
    """What `save` stored, or for a replayed idempotent append, what the
    original append stored."""

    events: list[RecordedEvent]
    replayed: bool


class RelationshipRepository:
    def __init__(
        self,
        store: EventStore,
        codec: EventCodec | Mapper[Any],
        *,
        snapshot_every: int = SNAPSHOT_EVERY,
    ):
        self.store = store
        self.codec: Codec = codec if isinstance(codec, EventCodec) else MapperCodec(codec)
        self.mapper = self.codec.snapshot_mapper
        """Snapshots (whole-payload encrypted with a cipher key; deleted by an erasure)."""
        self.snapshots = SnapshotStore(store)
        self.snapshot_every = snapshot_every
        self._latest: OrderedDict[UUID, Relationship] = OrderedDict()
        """The latest state of relationships this process wrote or read
        recently, so a write does not replay history first. Only ever mutated
        by a writer holding the relationship's lock (see service.relationships.serialise)."""
        self._programs: OrderedDict[UUID, str | None] = OrderedDict()
        """Programs of relationships (they never change), for access checks."""
        self._write_keys: OrderedDict[UUID, AESGCM | None] = OrderedDict()
        """Data keys to seal new events with (None: erased), by relationship.
        Dropped with the relationship's state (``forget``): a key erased by
        another process is only ever used for an event decided on a stale
        state, whose append the store then refuses."""
        self._recent: OrderedDict[int, tuple[Relationship.Event, bytes]] = OrderedDict()
        """The events this process saved lately, with the payloads they were
        stored as, by position (see `decode`)."""

    @property
    def can_erase(self) -> bool:
        """Whether erasable fields are sealed under data keys (a cipher key is set)."""
        return self.codec.seals

    async def save(
        self,
        relationship: Relationship,
        *,
        idempotency_key: str | None = None,
        fingerprint: bytes | None = None,
    ) -> Saved:
        """Append the relationship's pending events. Raises the store's errors
        (VersionConflict when another writer got there first, ...)."""
        pending = relationship.collect_events()
        opened = [e for e in pending if isinstance(e, Relationship.Opened)]
        if opened:
            await self._record_program(opened[0].originator_id, opened[0].program_id)
        data_key = await self._write_key(relationship.id) if self.codec.seals else None
        events = [self.to_new_event(cast(Relationship.Event, e), data_key) for e in pending]
        try:
            result = await self.store.append(
                events, idempotency_key=idempotency_key, fingerprint=fingerprint
            )
        except BaseException:
            self.forget(relationship.id)  # its state now holds events that were not stored
            raise
        if result.replayed:
            self.forget(relationship.id)
            return Saved(await self._recorded_at(result), replayed=True)
        recorded = [
            RecordedEvent(cast(Relationship.Event, e), new.event_id, position, result.recorded_at)
            for e, new, position in zip(pending, events, result.positions, strict=True)
        ]
        if any(isinstance(e, Relationship.PersonalDataErased) for e in pending):
            self.forget(relationship.id)  # its state in memory still holds what was erased
            self._forget_recent(relationship.id)
        else:
            self._remember(relationship)
            if data_key is not None or not self.codec.seals:  # stored as they are in memory
                self._keep_recent(recorded, events)
            await self._maybe_snapshot(relationship, pending[0].originator_version - 1)
        return Saved(recorded, replayed=False)

    async def load(
        self, relationship_id: UUID, *, version: int | None = None, as_of: datetime | None = None
    ) -> Relationship | None:
        """The relationship at its latest version, at `version`, or as it was at
        `as_of` (recorded time); None if it did not exist then."""
        if as_of is not None:
            at_time = await self.store.version_at(relationship_id, as_of)
            if at_time is None:
                return None
            version = at_time if version is None else min(version, at_time)
        snapshot = await self.snapshots.latest(relationship_id, at_most=version)
        records = await self.store.read_stream(
            relationship_id,
            from_version=None if snapshot is None else snapshot.originator_version + 1,
            to_version=version,
        )
        if snapshot is None and not records:
            return None
        decoded = (
            None if snapshot is None else cast(Snapshot, self.mapper.to_domain_event(snapshot))
        )
        events = (self.decode(record).event for record in records)
        return rebuild(events, snapshot=decoded)

    async def load_for_update(self, relationship_id: UUID) -> Relationship | None:
        """The latest state to decide a new event on: from memory when this
        process has it. It may be stale if another process wrote since; the
        store's version check then refuses the save, and the caller calls
        `forget` and decides again on a fresh load."""
        cached = self._latest.get(relationship_id)
        if cached is not None:
            self._latest.move_to_end(relationship_id)
            return cached
        relationship = await self.load(relationship_id)
        if relationship is not None:
            self._remember(relationship)
        return relationship

    async def load_latest(self, relationship_id: UUID) -> Relationship | None:
        """The current state for a reader: memory, if the store confirms it
        is still the latest version (one index lookup instead of a replay)."""
        cached = self._latest.get(relationship_id)
        if (
            cached is not None
            and await self.store.stream_version(relationship_id) == cached.version
        ):
            return cached
        return await self.load(relationship_id)

    async def program_of(self, relationship_id: UUID) -> tuple[bool, str | None]:
        """(whether the relationship exists, its program or None). Read from
        relationship_programs; a relationship opened before that table existed
        and not yet in it gets its row from its opening event."""
        if relationship_id in self._programs:
            return True, self._programs[relationship_id]
        row = await self.store.with_connection(
            lambda conn: conn.fetchrow(_PROGRAM_OF, relationship_id)
        )
        if row is not None:
            program: str | None = row["program_id"]
        else:
            records = await self.store.read_stream(relationship_id, from_version=1, to_version=1)
            if not records:
                return False, None
            opening = self.decode(records[0]).event
            program = opening.program_id if isinstance(opening, Relationship.Opened) else None
            await self._record_program(relationship_id, program)
        self._programs[relationship_id] = program
        while len(self._programs) > CACHED_PROGRAMS:
            self._programs.popitem(last=False)
        return True, program

    async def _record_program(self, relationship_id: UUID, program_id: str | None) -> None:
        """Written before the opening event is appended, so every stored
        relationship has its row; a row whose append then fails names a
        stream that can never exist (ids are random), which is harmless."""
        await self.store.with_connection(
            lambda conn: conn.execute(_RECORD_PROGRAM, relationship_id, program_id)
        )

    def forget(self, relationship_id: UUID) -> None:
        self._latest.pop(relationship_id, None)
        self._write_keys.pop(relationship_id, None)

    async def _write_key(self, relationship_id: UUID) -> AESGCM | None:
        """The relationship's data key to seal new events with, made (and
        stored, before any event that needs it) on first use; None once erased."""
        if relationship_id in self._write_keys:
            self._write_keys.move_to_end(relationship_id)
            return self._write_keys[relationship_id]
        codec = self.codec
        fresh = codec.new_data_key(relationship_id)  # used only if it has none yet
        rows = await self.store.with_connection(
            lambda conn: conn.fetch(_KEY_FOR_WRITING, relationship_id, fresh)
        )
        if rows:
            wrapped = rows[0]["wrapped_key"]
        else:  # made by another writer after this statement's snapshot was taken
            wrapped = await self.store.with_connection(
                lambda conn: conn.fetchval(_KEY_OF, relationship_id)
            )
        key = None if wrapped is None else codec.data_key(relationship_id, wrapped)
        self._write_keys[relationship_id] = key
        while len(self._write_keys) > CACHED_RELATIONSHIPS:
            self._write_keys.popitem(last=False)
        return key

    def _remember(self, relationship: Relationship) -> None:
        self._latest[relationship.id] = relationship
        self._latest.move_to_end(relationship.id)
        while len(self._latest) > CACHED_RELATIONSHIPS:
            self._latest.popitem(last=False)

    async def erasure_event(self, relationship_id: UUID) -> RecordedEvent | None:
        """The relationship's ``personal_data.erased`` event (the first one)."""
        for record in await self.store.read_stream(relationship_id):
            if record.metadata.get("type") == Relationship.PersonalDataErased.api_type:
                return self.decode(record)
        return None

    def decode(self, record: StoredRecord) -> RecordedEvent:
        """The record's event; its erasable fields opened with the data key read
        with it, or ``"[erased]"`` when that key was destroyed.

        An event this process saved lately is handed out as it was saved
        when the record holds the very payload it was stored as: decoding
        that payload gives back an equal event, every field of the same type
        (tests/unit/test_serialization.py), and decoding is the largest part
        of what the live projections spend per event. Only while the record's
        data key is there (or nothing is sealed): without it the erasable
        fields read as ``"[erased]"``, so that record is decoded."""
        if record.data_key is not None or not self.codec.seals:
            kept = self._recent.get(record.position)
            if kept is not None and kept[1] == record.payload:
                return RecordedEvent(kept[0], record.event_id, record.position, record.recorded_at)
        stored = StoredEvent(record.stream_id, record.version, record.topic, record.payload)
        event = self.codec.decode(stored, record.data_key)
        return RecordedEvent(event, record.event_id, record.position, record.recorded_at)

    def _keep_recent(self, recorded: Sequence[RecordedEvent], stored: Sequence[NewEvent]) -> None:
        recent = self._recent
        for saved, new in zip(recorded, stored, strict=True):
            # A copy: orjson's bytes hold on to their whole output buffer
            # (4 to 8 KB each, against 0.5 KB for the copy; tracemalloc).
            recent[saved.position] = (saved.event, bytes(memoryview(new.payload)))
        while len(recent) > RECENT_EVENTS:
            recent.popitem(last=False)

    def _forget_recent(self, relationship_id: UUID) -> None:
        """Drop a relationship's events kept in memory: once its personal data
        is erased, nothing of it stays in clear here."""
        kept = self._recent
        for position in [p for p, (e, _) in kept.items() if e.originator_id == relationship_id]:
            del kept[position]

    def to_new_event(self, event: Relationship.Event, data_key: AESGCM | None = None) -> NewEvent:
        """The event as the store takes it: encoded payload (erasable fields
        sealed under ``data_key`` when the codec seals), envelope in clear."""
        stored = self.codec.encode(event, data_key)
        return NewEvent(
            stream_id=cast(UUID, stored.originator_id),
            version=stored.originator_version,
            topic=stored.topic,
            payload=stored.state,
            metadata=event_metadata(event),
        )

    async def _recorded_at(self, result: AppendResult) -> list[RecordedEvent]:
        if not result.positions:
            return []
        records = await self.store.read_log(min(result.positions) - 1, len(result.positions))
        return [self.decode(r) for r in records]

    async def _maybe_snapshot(self, relationship: Relationship, before: int) -> None:
        """Snapshot when the save crossed a multiple of `snapshot_every`. Best
        effort: a missing snapshot only makes the next load slower."""
        if relationship.version // self.snapshot_every == before // self.snapshot_every:
            return
        try:
            await self.snapshots.save(self.mapper.to_stored_event(take_snapshot(relationship)))
        except StoreError as exc:
            log.warning("snapshot of %s skipped: %s", relationship.id, exc)

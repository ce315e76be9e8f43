"""What a projection is, and the events it is given.

A projection turns the global log into rows of its own tables and answers
queries from them. It never reads the log itself: the runner (in ``service``)
reads the log in order, hands each projection a batch of events together with
a connection inside the transaction that also moves the projection's
checkpoint, so rows and checkpoint commit together (exactly-once effect).
That keeps this package free of the event store: it imports ``domain`` and
``asyncpg`` connections only.

Decoding a payload (JSON, maybe zlib and AES) costs far more than writing a
row, and most projections need only the clear-text envelope of most events
(type, occurred_at, phases). So a :class:`ProjectedEvent` decodes its domain
event lazily, the first time a handler asks for it, and keeps it: the live
projections of a process share one ProjectedEvent per record, so an event is
decoded (and its metadata read) once, not once per projection. Decoding can
be done ahead in :meth:`Projection.prepare`, which the runner calls as events
are read, while the previous batch is being written.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

import asyncpg

from domain import EVENT_CLASSES, EventMetadata, Relationship, read_metadata
from projections.sql import quote_ident

Decoder = Callable[[], Relationship.Event]
"""Decodes one event's payload into its domain event (called at most once)."""


class ProjectedEvent:
    """One stored event as projections see it: its place in the log, its
    clear-text envelope (``metadata``) and, on demand, the decoded event."""

    __slots__ = (
        "_decode",
        "_event",
        "chain_hash",
        "event_id",
        "meta",
        "metadata",
        "position",
        "recorded_at",
        "relationship_id",
        "topic",
        "type",
        "version",
    )

    def __init__(
        self,
        *,
        position: int,
        relationship_id: UUID,
        version: int,
        event_id: UUID,
        topic: str,
        metadata: Mapping[str, Any],
        recorded_at: datetime,
        chain_hash: bytes,
        decode: Decoder,
    ) -> None:
        self.position = position
        self.relationship_id = relationship_id
        self.version = version
        self.event_id = event_id
        self.topic = topic
        self.metadata = metadata
        """The metadata as stored (JSON), for the audit trail."""
        self.meta: EventMetadata = read_metadata(metadata)
        """The metadata read back (see :mod:`domain.metadata`)."""
        self.type = self.meta.type
        """The API event type (``meeting.held``)."""
        self.recorded_at = recorded_at
        self.chain_hash = chain_hash
        self._decode = decode
        self._event: Relationship.Event | None = None

    @property
    def event(self) -> Relationship.Event:
        """The domain event, decoded on first use (decoding dominates cost)."""
        if self._event is None:
            self._event = self._decode()
        return self._event

    @property
    def is_relationship_event(self) -> bool:
        """Whether this is one of the relationship's event types. Anything else
        in the log (a foreign topic) is skipped by every projection, the same
        way on every replay, so it cannot make a rebuild differ."""
        return self.type in EVENT_CLASSES

    @property
    def occurred_at(self) -> datetime:
        """When it happened in the world (the metadata's ``occurred_at``)."""
        return self.meta.occurred_at or self.recorded_at

    @property
    def from_phase(self) -> str | None:
        return self.meta.from_phase

    @property
    def to_phase(self) -> str | None:
        return self.meta.to_phase

    @property
    def outcome(self) -> str | None:
        """The outcome the event concluded the relationship with (None unless
        it concluded it): the event says it (``concluded_outcome``); only
        such events are decoded to ask."""
        return self.event.concluded_outcome() if self.meta.concludes else None


class Projection(ABC):
    """A read model: its tables, how events change them, how to empty them.

    Handlers must be deterministic functions of the events (never of the
    clock or of batch boundaries), so that processing the log incrementally
    and rebuilding it from position 0 give identical tables. Anything that
    depends on "now" (at-risk flags) is computed by the queries instead.
    """

    name: ClassVar[str]
    """Stable identifier: names the checkpoint, the worker lock and the metric label."""
    tables: ClassVar[tuple[str, ...]]
    """The tables this projection owns (DDL in ``service/store/migrations``)."""
    rebuildable: ClassVar[bool] = True
    """Whether a rebuild may replace the tables by ones built from position 0
    beside them. False for rows that are history rather than a view (the
    webhook outbox: rebuilding it would send messages again)."""

    def prepare(self, event: ProjectedEvent) -> None:
        """Decode ahead (``event.event``) the events :meth:`handle` will read,
        as they are read, while the previous batch is written. The live
        projections of a process are given the same event objects, so what
        one decoded the others read for free. ``handle`` must still work on
        an event that was not prepared. By default: nothing."""
        return None

    @abstractmethod
    async def handle(self, conn: asyncpg.Connection, batch: Sequence[ProjectedEvent]) -> None:
        """Apply ``batch`` (consecutive events of the log, in order) inside the
        caller's transaction. Raise to reject the whole batch: nothing of it is
        kept and it will be offered again."""

    async def clear(self, conn: asyncpg.Connection) -> None:
        """Empty the tables (inside the caller's transaction). A rebuild does
        not need it: it builds new tables beside the serving ones."""
        names = ", ".join(quote_ident(table) for table in self.tables)
        await conn.execute(f"TRUNCATE {names}")


def relationship_events(batch: Sequence[ProjectedEvent]) -> list[ProjectedEvent]:
    """The events of ``batch`` that are relationship events (see
    :attr:`ProjectedEvent.is_relationship_event`)."""
    return [event for event in batch if event.is_relationship_event]

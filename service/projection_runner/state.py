"""What the runner's parts share: its SQL, its errors and reports, a
worker's state, and the attributes every part of :class:`ProjectionRunner`
reads."""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from domain import Relationship
from projections import ProjectedEvent, Projection
from service.projection_runner.metrics import ProjectionMetrics
from service.store.eventstore import EventStore, record_of
from service.store.records import StoredRecord

ENSURE_STATE = "INSERT INTO projection_state (name) VALUES ($1) ON CONFLICT (name) DO NOTHING"
GENERATION = "SELECT generation FROM projection_state WHERE name = $1"
STATE = "SELECT generation, failed_position FROM projection_state WHERE name = $1"
FENCE = "SELECT generation FROM projection_state WHERE name = $1 FOR SHARE"
LOCK_STATE = "SELECT generation FROM projection_state WHERE name = $1 FOR UPDATE"
NEW_GENERATION = (
    "UPDATE projection_state"
    " SET last_generation = greatest(coalesce(last_generation, generation), generation) + 1"
    " WHERE name = $1 RETURNING last_generation"
)
SWAPPED = (
    "UPDATE projection_state SET generation = $2, rebuilt_at = clock_timestamp(),"
    " failed_position = NULL, failed_error = NULL, failed_at = NULL WHERE name = $1"
)
RECORD_FAILURE = (
    "UPDATE projection_state SET failed_position = $2, failed_error = $3,"
    " failed_at = CASE WHEN failed_position = $2 THEN failed_at ELSE clock_timestamp() END"
    " WHERE name = $1"
)
"""``failed_at`` says since when the projection is stuck at that position."""
CLEAR_FAILURE = (
    "UPDATE projection_state SET failed_position = NULL, failed_error = NULL, failed_at = NULL"
    " WHERE name = $1 AND failed_position <= $2"
)
FAILURES = (
    "SELECT name, failed_position, failed_error, failed_at FROM projection_state"
    " WHERE failed_position IS NOT NULL AND name = ANY($1::text[]) ORDER BY name"
)
INDEXES = (
    "SELECT i.relname AS name, x.indisunique AS is_unique,"
    " regexp_replace(pg_get_indexdef(i.oid), '^.* USING ', '') AS definition"
    " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
    " WHERE x.indrelid = to_regclass($1) ORDER BY i.relname"
)
PRIMARY_KEYS = (
    "SELECT conname AS name, pg_get_constraintdef(oid) AS definition FROM pg_constraint"
    " WHERE conrelid = to_regclass($1) AND contype = 'p'"
)
SECONDARY_INDEXES = (
    "SELECT i.relname AS name, x.indisunique AS is_unique,"
    " regexp_replace(pg_get_indexdef(i.oid), '^.* USING ', '') AS definition,"
    " c.conname AS constraint_name, pg_get_constraintdef(c.oid) AS constraint_definition"
    " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
    " LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid"
    " WHERE x.indrelid = to_regclass($1) AND NOT x.indisprimary ORDER BY i.relname"
)
"""A table's indexes other than its primary key; for those that back a
constraint (UNIQUE), the constraint (a rebuild makes them after the load)."""
TRY_LOCK = "SELECT pg_try_advisory_lock(hashtext($1))"
UNLOCK = "SELECT pg_advisory_unlock(hashtext($1))"

MAX_ERROR_TEXT = 1000
"""Of a failure's error message, what ``projection_state`` keeps."""


def tracking_name(name: str, generation: int) -> str:
    """The checkpoint of one generation of a projection."""
    return f"projection.{name}.{generation}"


def shadow_schema(schema: str, name: str) -> str:
    """The schema a rebuild of projection ``name`` builds its tables in
    (deterministic, so a rebuild that died leaves one the next one drops)."""
    return "mf_rebuild_" + hashlib.sha256(f"{schema}.{name}".encode()).hexdigest()[:20]


class GenerationChanged(Exception):
    """A rebuild swapped in a new generation: the worker restarts from its checkpoint."""


class EventFailed(Exception):
    """A projection's handler failed on the event at ``position``."""

    def __init__(self, name: str, position: int, error: BaseException) -> None:
        self.name = name
        self.position = position
        self.error = error
        super().__init__(f"projection {name} failed at position {position}: {describe(error)}")


class BatchFailed(Exception):
    """A projection's handler failed on a batch of several events."""

    def __init__(self, name: str, batch: Sequence[ProjectedEvent], error: BaseException) -> None:
        self.name = name
        self.first = batch[0].position
        self.last = batch[-1].position
        self.error = error
        super().__init__(
            f"projection {name} failed on positions {self.first} to {self.last}: {describe(error)}"
        )


class RebuildFailed(Exception):
    """A rebuild stopped before its swap: the serving tables are unchanged."""

    def __init__(self, name: str, position: int | None, error: BaseException) -> None:
        self.name = name
        self.position = position
        self.error = error
        where = "" if position is None else f" at position {position}"
        super().__init__(
            f"rebuild of {name} failed{where}: {describe(error)}; the serving tables are unchanged"
        )


def describe(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 1] + "…"


@dataclass(frozen=True)
class ProjectionFailure:
    """A projection stuck at an event (as recorded in ``projection_state``)."""

    projection: str
    position: int
    error: str
    since: datetime


@dataclass(frozen=True)
class RebuildProgress:
    """Where a rebuild is: the new generation's checkpoint against the log's
    last position when the rebuild started."""

    name: str
    position: int
    target: int
    elapsed_s: float

    @property
    def fraction(self) -> float:
        return 1.0 if self.target <= 0 else min(1.0, self.position / self.target)

    @property
    def events_per_s(self) -> float:
        return self.position / self.elapsed_s if self.elapsed_s > 0 else 0.0


ProgressCallback = Callable[[RebuildProgress], None]


@dataclass(frozen=True)
class RebuildReport:
    name: str
    generation: int
    events: int
    """Positions replayed (the log's last position when the rebuild started)."""
    seconds: float
    position: int
    """The new generation's checkpoint when it was swapped in."""


@dataclass
class Worker:
    """One projection's state in this process."""

    projection: Projection
    leading: bool = False
    conn: asyncpg.Connection | None = None
    """The lock holder's connection while this process runs the worker."""
    stuck: int | None = None
    """The position recorded as failing (cleared once committed)."""
    careful_until: int | None = None
    """After a batch failed: its last position, up to which events are then
    committed one at a time, to find the one that fails."""
    committed: tuple[int, int] | None = None
    """(generation, position) of the last batch this process committed."""
    progressed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set (then replaced) after every commit, to wake read-your-writes waiters."""

    def announce(self, generation: int, position: int) -> None:
        self.committed = (generation, position)
        self.progressed.set()
        self.progressed = asyncio.Event()


Apply = Callable[[Sequence[ProjectedEvent]], Awaitable[None]]
"""Commits a batch (rows and checkpoint) in a transaction of its own."""


class RunnerParts:
    """The attributes and helpers that each part of the runner (monitoring,
    running, leadership, rebuild) relies on; :class:`ProjectionRunner` sets them."""

    store: EventStore
    dsn: str
    batch_size: int
    poll_interval: float
    min_interval: float
    takeover_interval: float
    metrics_interval: float
    metrics: ProjectionMetrics
    _decode: Callable[[StoredRecord], Relationship.Event]
    _workers: dict[str, Worker]
    _live_events: OrderedDict[tuple[int, bytes | None], ProjectedEvent]
    """The live projections' shared events, by position and data key (see Running._shared)."""

    @property
    def names(self) -> list[str]:
        return list(self._workers)

    def _worker(self, name: str) -> Worker:
        try:
            return self._workers[name]
        except KeyError:
            raise KeyError(f"no projection {name!r}; known: {', '.join(self._workers)}") from None


def projected_row(
    row: asyncpg.Record, decode: Callable[[StoredRecord], Relationship.Event]
) -> ProjectedEvent:
    """A row of :meth:`EventStore.read_log_rows` as projections see it; the
    stored record is made only if the event is decoded."""
    position, stream_id, version, event_id, topic, _, metadata, recorded_at, chain_hash, _ = row
    return ProjectedEvent(
        position=position,
        relationship_id=stream_id,
        version=version,
        event_id=event_id,
        topic=topic,
        metadata=metadata,
        recorded_at=recorded_at,
        chain_hash=chain_hash,
        decode=functools.partial(_decode_row, decode, row),
    )


def _decode_row(
    decode: Callable[[StoredRecord], Relationship.Event], row: asyncpg.Record
) -> Relationship.Event:
    return decode(record_of(row))


def projected_event(
    record: StoredRecord, decode: Callable[[StoredRecord], Relationship.Event]
) -> ProjectedEvent:
    """A stored record as projections see it (for readers outside the runner)."""
    return ProjectedEvent(
        position=record.position,
        relationship_id=record.stream_id,
        version=record.version,
        event_id=record.event_id,
        topic=record.topic,
        metadata=record.metadata,
        recorded_at=record.recorded_at,
        chain_hash=record.chain_hash,
        decode=functools.partial(decode, record),
    )

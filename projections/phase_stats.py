"""Read model: phase statistics, for ``GET /v1/stats/phases``.

Tables ``phase_stats_relationships`` (current phase, paused, outcome) and
``phase_stats_stays`` (every stay in a phase, entered and left), migration
0013. It reads envelopes only (type, phases, occurred_at), decoding nothing
but ``relationship.concluded`` for its outcome, so it is the cheapest
projection to keep up to date and to rebuild.

Figures (see :func:`phase_stats`):

- ``phases``: relationships per current phase (and how many of them are paused);
- ``time_in_phase``: per phase, the median and 90th percentile of completed
  stays, in seconds, measured between the ``occurred_at`` of the event that
  entered the phase and of the one that left it (domain time, as the
  aggregate's ``phase_entered_at``; time spent paused counts). Percentiles
  interpolate linearly (PostgreSQL's ``percentile_cont``). Stays not yet
  completed are counted apart (``open_stays``), and ``concluded`` has none;
- ``funnel``: per phase, how many relationships ever reached it, from
  reflection to concluded (a withdrawn relationship reaches ``concluded``
  straight from the phase it was in), with the share of all relationships;
- ``outcomes``: concluded relationships per outcome (``withdrawn`` included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from domain import Relationship
from projections.base import ProjectedEvent, Projection, relationship_events
from projections.sql import finite_epoch
from workflows import PHASES

NAME = "phase_statistics"
RELATIONSHIPS = "phase_stats_relationships"
STAYS = "phase_stats_stays"

_RELEVANT = frozenset(
    {
        "relationship.paused",
        "relationship.resumed",
        "relationship.concluded",
        "relationship.withdrawn",
    }
)

_LOAD = (
    f"SELECT relationship_id, phase, paused, outcome FROM {RELATIONSHIPS}"  # noqa: S608
    " WHERE relationship_id = ANY($1::uuid[])"
)
_UPSERT = (
    f"INSERT INTO {RELATIONSHIPS} (relationship_id, phase, paused, outcome)"  # noqa: S608
    " SELECT * FROM unnest($1::uuid[], $2::text[], $3::boolean[], $4::text[])"
    " ON CONFLICT (relationship_id) DO UPDATE"
    " SET phase = EXCLUDED.phase, paused = EXCLUDED.paused, outcome = EXCLUDED.outcome"
)
_CLOSE = (
    f"UPDATE {STAYS} s SET left_at = c.left_at"  # noqa: S608
    " FROM unnest($1::uuid[], $2::timestamptz[]) AS c(relationship_id, left_at)"
    " WHERE s.relationship_id = c.relationship_id AND s.left_at IS NULL"
)
_INSERT_STAYS = (
    f"INSERT INTO {STAYS} (relationship_id, entered_position, phase, entered_at, left_at)"  # noqa: S608
    " SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::timestamptz[],"
    " $5::timestamptz[])"
)


@dataclass(slots=True)
class _Current:
    phase: str
    paused: bool
    outcome: str | None


@dataclass(slots=True)
class _Stay:
    relationship_id: UUID
    entered_position: int
    phase: str
    entered_at: datetime
    left_at: datetime | None = None


@dataclass
class _BatchChanges:
    """What one batch does to the tables, collected in memory first."""

    current: dict[UUID, _Current | None]
    stays: list[_Stay]
    open_stay: dict[UUID, _Stay]
    """The stay of this batch that is still open, per relationship."""
    close_stored: dict[UUID, datetime]
    """Relationships whose stored open stay ends in this batch, and when."""

    def change_phase(self, event: ProjectedEvent, phase: str) -> None:
        rid, at = event.relationship_id, event.occurred_at
        previous = self.open_stay.get(rid)
        if previous is not None:
            previous.left_at = at
        elif event.type != "relationship.opened":
            self.close_stored.setdefault(rid, at)
        stay = _Stay(rid, event.position, phase, at)
        self.stays.append(stay)
        self.open_stay[rid] = stay


def _outcome(event: ProjectedEvent) -> str | None:
    if event.type == "relationship.withdrawn":
        return "withdrawn"  # as the aggregate records it
    if event.type == "relationship.concluded":
        concluded = event.event
        assert isinstance(concluded, Relationship.RelationshipConcluded)
        return concluded.outcome
    return None


def _apply(changes: _BatchChanges, event: ProjectedEvent) -> None:
    rid = event.relationship_id
    if event.type == "relationship.opened":
        changes.current[rid] = _Current("reflection", False, None)
        changes.change_phase(event, "reflection")
        return
    current = changes.current.get(rid)
    if current is None:
        return  # never opened: nothing to count
    if event.type in ("relationship.paused", "relationship.resumed"):
        current.paused = event.type == "relationship.paused"
    outcome = _outcome(event)
    if outcome is not None:
        current.outcome = outcome
    if event.changes_phase and event.to_phase is not None:
        current.phase, current.paused = event.to_phase, False
        changes.change_phase(event, event.to_phase)


class PhaseStatistics(Projection):
    """Three set-based statements per batch (upsert relationships, close the
    stays that ended, insert the new ones), after one load."""

    name = NAME
    tables = (RELATIONSHIPS, STAYS)

    def prepare(self, event: ProjectedEvent) -> None:
        """Decode ahead the one event type whose payload is read (its outcome)."""
        if event.type == "relationship.concluded":
            event.event  # noqa: B018 - decoded now, cached on the event

    async def handle(self, conn: asyncpg.Connection, batch: Sequence[ProjectedEvent]) -> None:
        events = [e for e in relationship_events(batch) if e.changes_phase or e.type in _RELEVANT]
        if not events:
            return
        changes = await self._load(conn, events)
        for event in events:
            _apply(changes, event)
        await self._write(conn, changes)

    @staticmethod
    async def _load(conn: asyncpg.Connection, events: list[ProjectedEvent]) -> _BatchChanges:
        ids = list(dict.fromkeys(e.relationship_id for e in events))
        current: dict[UUID, _Current | None] = dict.fromkeys(ids)
        for row in await conn.fetch(_LOAD, ids):
            rid = UUID(bytes=row["relationship_id"].bytes)
            current[rid] = _Current(row["phase"], row["paused"], row["outcome"])
        return _BatchChanges(current, [], {}, {})

    @staticmethod
    async def _write(conn: asyncpg.Connection, changes: _BatchChanges) -> None:
        rows = [(rid, c) for rid, c in changes.current.items() if c is not None]
        if rows:
            await conn.execute(
                _UPSERT,
                [rid for rid, _ in rows],
                [c.phase for _, c in rows],
                [c.paused for _, c in rows],
                [c.outcome for _, c in rows],
            )
        if changes.close_stored:
            await conn.execute(
                _CLOSE, list(changes.close_stored), list(changes.close_stored.values())
            )
        if changes.stays:
            stays = changes.stays
            await conn.execute(
                _INSERT_STAYS,
                [s.relationship_id for s in stays],
                [s.entered_position for s in stays],
                [s.phase for s in stays],
                [s.entered_at for s in stays],
                [s.left_at for s in stays],
            )


# --- the query -----------------------------------------------------------------------------

# $1: the programs a token is limited to (NULL: every relationship)
_IN_PROGRAMS = (
    "($1::text[] IS NULL OR relationship_id IN"
    " (SELECT stream_id FROM relationship_programs WHERE program_id = ANY($1::text[])))"
)
_COUNTS = (
    f"SELECT phase, count(*) AS total, count(*) FILTER (WHERE paused) AS paused"  # noqa: S608
    f" FROM {RELATIONSHIPS} WHERE {_IN_PROGRAMS} GROUP BY phase"
)
_SECONDS = f"{finite_epoch('left_at')} - {finite_epoch('entered_at')}"
"""A stay's length; an end of time stored as an infinity counts as that instant."""
_DURATIONS = f"""
SELECT phase,
       count(*) FILTER (WHERE left_at IS NOT NULL) AS completed,
       count(*) FILTER (WHERE left_at IS NULL) AS open,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY {_SECONDS})
           FILTER (WHERE left_at IS NOT NULL) AS median,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY {_SECONDS})
           FILTER (WHERE left_at IS NOT NULL) AS p90
  FROM {STAYS} WHERE {_IN_PROGRAMS} GROUP BY phase
"""  # noqa: S608 - constants only
_FUNNEL = (
    f"SELECT phase, count(DISTINCT relationship_id) AS reached FROM {STAYS}"  # noqa: S608
    f" WHERE {_IN_PROGRAMS} GROUP BY phase"
)
_OUTCOMES = (
    f"SELECT outcome, count(*) AS total FROM {RELATIONSHIPS}"  # noqa: S608
    f" WHERE outcome IS NOT NULL AND {_IN_PROGRAMS} GROUP BY outcome ORDER BY outcome"
)


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


async def phase_stats(
    conn: asyncpg.Connection, *, program_ids: Sequence[str] | None = None
) -> dict[str, Any]:
    """The statistics as ``GET /v1/stats/phases`` shows them (every phase is
    listed, with zeros, so clients need no special cases); ``program_ids``
    counts only relationships of those programs (table relationship_programs)."""
    programs = None if program_ids is None else list(program_ids)
    counts = {row["phase"]: row for row in await conn.fetch(_COUNTS, programs)}
    durations = {row["phase"]: row for row in await conn.fetch(_DURATIONS, programs)}
    reached = {row["phase"]: row["reached"] for row in await conn.fetch(_FUNNEL, programs)}
    outcomes = {row["outcome"]: row["total"] for row in await conn.fetch(_OUTCOMES, programs)}
    total = sum(row["total"] for row in counts.values())
    return {
        "relationships": total,
        "phases": {
            phase: {
                "count": counts[phase]["total"] if phase in counts else 0,
                "paused": counts[phase]["paused"] if phase in counts else 0,
            }
            for phase in PHASES
        },
        "time_in_phase": {
            phase: _durations(durations.get(phase)) for phase in PHASES if phase != "concluded"
        },
        "time_unit": "seconds",
        "funnel": [
            {
                "phase": phase,
                "reached": reached.get(phase, 0),
                "share": round(reached.get(phase, 0) / total, 4) if total else None,
            }
            for phase in PHASES
        ],
        "outcomes": outcomes,
    }


def _durations(row: asyncpg.Record | None) -> dict[str, Any]:
    if row is None:
        return {"completed_stays": 0, "open_stays": 0, "median_seconds": None, "p90_seconds": None}
    return {
        "completed_stays": row["completed"],
        "open_stays": row["open"],
        "median_seconds": _seconds(row["median"]),
        "p90_seconds": _seconds(row["p90"]),
    }

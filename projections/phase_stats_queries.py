"""The SQL of the phase statistics: writing a batch's changes, and the
query of ``GET /v1/stats/phases`` (see :mod:`projections.phase_stats`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg

from projections.phase_stats_fold import BatchChanges, Current
from projections.sql import finite_epoch
from workflows import PHASES

NAME = "phase_statistics"
RELATIONSHIPS = "phase_stats_relationships"
STAYS = "phase_stats_stays"
ADVOCACY_TABLE = "phase_stats_advocacy"

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
_INSERT_ADVOCACY = (
    f"INSERT INTO {ADVOCACY_TABLE} (relationship_id, position, kind)"  # noqa: S608
    " SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[])"
    " ON CONFLICT (relationship_id, position) DO NOTHING"
)


async def load(conn: asyncpg.Connection, ids: Sequence[UUID]) -> BatchChanges:
    """The stored state of these relationships, as the start of a batch's changes."""
    current: dict[UUID, Current | None] = dict.fromkeys(ids)
    for row in await conn.fetch(_LOAD, list(ids)):
        rid = UUID(bytes=row["relationship_id"].bytes)
        current[rid] = Current(row["phase"], row["paused"], row["outcome"])
    return BatchChanges(current, [], {}, {})


async def write(conn: asyncpg.Connection, changes: BatchChanges) -> None:
    """A batch's changes: upsert relationships, close the stays that ended,
    insert the new ones."""
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
        await conn.execute(_CLOSE, list(changes.close_stored), list(changes.close_stored.values()))
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
    if changes.advocacy:
        await conn.execute(
            _INSERT_ADVOCACY,
            [rid for rid, _, _ in changes.advocacy],
            [position for _, position, _ in changes.advocacy],
            [kind for _, _, kind in changes.advocacy],
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

_ADVOCACY = f"""
SELECT p.program_id, a.kind, count(*) AS total
  FROM {ADVOCACY_TABLE} a LEFT JOIN relationship_programs p ON p.stream_id = a.relationship_id
 WHERE {_IN_PROGRAMS.replace("relationship_id IN", "a.relationship_id IN")}
 GROUP BY p.program_id, a.kind
"""  # noqa: S608 - constants only


def _advocacy(rows: Sequence[asyncpg.Record]) -> dict[str, Any]:
    """``{count, by_kind, by_program: {program: {count, by_kind}}}``; a
    relationship opened without a program counts overall only."""
    overall: dict[str, int] = {}
    programs: dict[str, dict[str, int]] = {}
    for row in rows:
        kind, total = row["kind"], row["total"]
        overall[kind] = overall.get(kind, 0) + total
        if row["program_id"] is not None:
            by_kind = programs.setdefault(row["program_id"], {})
            by_kind[kind] = by_kind.get(kind, 0) + total
    return {
        "count": sum(overall.values()),
        "by_kind": dict(sorted(overall.items())),
        "by_program": {
            program: {"count": sum(by_kind.values()), "by_kind": dict(sorted(by_kind.items()))}
            for program, by_kind in sorted(programs.items())
        },
    }


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
    advocacy = _advocacy(await conn.fetch(_ADVOCACY, programs))
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
        "advocacy": advocacy,
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

"""The SQL of the relationship summaries: loading and writing rows, and
the list of ``GET /v1/relationships`` with its at-risk rules, evaluated at
query time (see :mod:`projections.summaries`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from domain import to_jsonable
from projections.paging import InvalidQuery, page_request
from projections.paging import next_cursor as _next_cursor
from projections.sql import aware, capped
from projections.summaries_fold import Summary
from workflows import PHASES

NAME = "relationship_summary"
TABLE = "relationship_summaries"
CURSOR_KIND = "relationships"

CADENCE_PERIODS: Mapping[str, timedelta] = {
    "weekly": timedelta(days=7),
    "biweekly": timedelta(days=14),
    "monthly": timedelta(days=31),
    "quarterly": timedelta(days=92),
}
CADENCE_GRACE: Mapping[str, timedelta] = {
    "weekly": timedelta(days=3),
    "biweekly": timedelta(days=4),
    "monthly": timedelta(days=7),
    "quarterly": timedelta(days=14),
}
"""A meeting that slips a few days is normal; the grace grows with the period."""


@dataclass(frozen=True)
class RiskPolicy:
    """The thresholds of the at-risk rules (see the module docstring)."""

    cadence_periods: Mapping[str, timedelta] = field(default_factory=lambda: CADENCE_PERIODS)
    cadence_grace: Mapping[str, timedelta] = field(default_factory=lambda: CADENCE_GRACE)
    first_meeting_within: timedelta = timedelta(days=30)
    pause_limit: timedelta = timedelta(days=30)

    def meeting_allowance(self, frequency: str) -> timedelta:
        """How long after the last meeting the next one is overdue."""
        return self.cadence_periods[frequency] + self.cadence_grace.get(frequency, timedelta())


RISK_CODES = (
    "no_recent_meeting",
    "no_first_meeting",
    "overdue_action_items",
    "open_high_concern",
    "paused_too_long",
)


_COLUMN_TYPES: Mapping[str, str] = {
    "relationship_id": "uuid",
    "opened_position": "bigint",
    "version": "bigint",
    "last_position": "bigint",
    "mentee_id": "text",
    "mentee_name": "text",
    "program_id": "text",
    "predecessor_id": "uuid",
    "mentor_id": "text",
    "phase": "text",
    "paused": "boolean",
    "paused_since": "timestamptz",
    "resumed_at": "timestamptz",
    "opened_at": "timestamptz",
    "phase_entered_at": "timestamptz",
    "last_event_at": "timestamptz",
    "established_at": "timestamptz",
    "cadence": "text",
    "last_meeting_at": "timestamptz",
    "meetings_held": "integer",
    "meetings_since_established": "integer",
    "open_action_items": "jsonb",
    "earliest_open_due": "date",
    "concerns": "integer",
    "open_high_concerns": "integer",
    "outcome": "text",
}
COLUMNS = tuple(f.name for f in dataclasses.fields(Summary))
assert tuple(_COLUMN_TYPES) == COLUMNS, "column types must follow the Summary fields"


def _upsert_sql() -> str:
    """One set-based upsert of a whole batch's rows (arrays, one per column;
    jsonb travels as text because arrays of jsonb have no binary codec)."""
    params = ", ".join(
        f"${i}::{'text' if t == 'jsonb' else t}[]" for i, t in enumerate(_COLUMN_TYPES.values(), 1)
    )
    selected = ", ".join(
        f"u.{c}::jsonb" if t == "jsonb" else f"u.{c}" for c, t in _COLUMN_TYPES.items()
    )
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS if c != "relationship_id")
    return (
        f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) SELECT {selected}"  # noqa: S608 - constants
        f" FROM unnest({params}) AS u({', '.join(COLUMNS)})"
        f" ON CONFLICT (relationship_id) DO UPDATE SET {updates}"
    )


_UPSERT = _upsert_sql()
_LOAD = f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE relationship_id = ANY($1::uuid[])"  # noqa: S608


def _from_row(row: asyncpg.Record) -> Summary:
    values = {key: aware(value) for key, value in row.items()}
    values["relationship_id"] = UUID(bytes=row["relationship_id"].bytes)
    if row["predecessor_id"] is not None:
        values["predecessor_id"] = UUID(bytes=row["predecessor_id"].bytes)
    values["open_action_items"] = dict(row["open_action_items"])
    return Summary(**values)


def _columns(rows: Sequence[Summary]) -> list[list[Any]]:
    """The rows as one array per column, in column order."""
    columns: list[list[Any]] = [[] for _ in COLUMNS]
    for row in rows:
        for index, name in enumerate(COLUMNS):
            value = getattr(row, name)
            columns[index].append(json.dumps(value) if name == "open_action_items" else value)
    return columns


async def load_rows(conn: asyncpg.Connection, ids: Sequence[UUID]) -> dict[UUID, Summary]:
    """The stored rows of these relationships (those that have one)."""
    rows = [_from_row(row) for row in await conn.fetch(_LOAD, list(ids))]
    return {row.relationship_id: row for row in rows}


async def upsert_rows(conn: asyncpg.Connection, rows: Sequence[Summary]) -> None:
    """Write these rows with one set-based upsert."""
    await conn.execute(_UPSERT, *_columns(rows))


# --- queries -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """The filters of ``GET /v1/relationships`` (None: no filter).
    ``at_risk=True`` keeps relationships at risk, ``False`` those that are not."""

    phase: str | None = None
    mentee_id: str | None = None
    mentor_id: str | None = None
    program_id: str | None = None
    at_risk: bool | None = None
    program_ids: tuple[str, ...] | None = None
    """Only relationships of these programs (a token limited to programs)."""

    def check(self) -> None:
        if self.phase is not None and self.phase not in PHASES:
            raise InvalidQuery("phase", f"must be one of {', '.join(PHASES)}")


_FLAGS = f"""
    SELECT s.*,
        {
    capped(
        "greatest(s.last_meeting_at, s.established_at, s.resumed_at)"
        " + (SELECT a.allowance FROM unnest($9::text[], $10::interval[])"
        " AS a(cadence, allowance) WHERE a.cadence = s.cadence)"
    )
} AS meeting_due_by,
        {capped("greatest(s.established_at, s.resumed_at) + $11::interval")}
            AS first_meeting_due_by,
        {capped("s.paused_since + $12::interval")} AS pause_limit_at
      FROM {TABLE} s
     WHERE s.opened_position > $1
       AND ($2::text IS NULL OR s.phase = $2) AND ($3::text IS NULL OR s.mentee_id = $3)
       AND ($4::text IS NULL OR s.mentor_id = $4) AND ($5::text IS NULL OR s.program_id = $5)
       AND ($14::text[] IS NULL OR s.program_id = ANY($14::text[]))
"""  # noqa: S608 - the table name is a constant
_RULES = """
    SELECT f.*,
        coalesce(f.phase = 'cultivation' AND NOT f.paused AND f.meeting_due_by < $7, false)
            AS no_recent_meeting,
        coalesce(f.phase = 'cultivation' AND NOT f.paused AND f.meetings_since_established = 0
                 AND f.first_meeting_due_by < $7, false) AS no_first_meeting,
        coalesce(f.phase <> 'concluded' AND f.earliest_open_due < $8, false)
            AS overdue_action_items,
        coalesce(f.phase <> 'concluded' AND f.open_high_concerns > 0, false) AS open_high_concern,
        coalesce(f.phase <> 'concluded' AND f.paused AND f.pause_limit_at < $7, false)
            AS paused_too_long
      FROM flagged f
"""
_LIST = f"""
WITH flagged AS ({_FLAGS}), ruled AS ({_RULES})
SELECT r.*, ({" OR ".join(f"r.{code}" for code in RISK_CODES)}) AS at_risk
  FROM ruled r
 WHERE $6::boolean IS NULL OR ({" OR ".join(f"r.{code}" for code in RISK_CODES)}) = $6
 ORDER BY r.opened_position
 LIMIT $13
"""  # noqa: S608 - built from constants only


async def list_relationships(
    conn: asyncpg.Connection,
    *,
    filters: Filters = Filters(),
    limit: int | None = None,
    cursor: str | None = None,
    now: datetime,
    policy: RiskPolicy = RiskPolicy(),
) -> dict[str, Any]:
    """A page of summaries, oldest first: ``{"items": [...], "next_cursor": ...}``.

    ``now`` decides the at-risk flags (pass the service's clock). Raises
    :class:`InvalidQuery` for a bad phase, limit or cursor.
    """
    filters.check()
    request = page_request(limit, cursor, kind=CURSOR_KIND)
    cadences = sorted(policy.cadence_periods)
    rows = await conn.fetch(
        _LIST,
        request.after or 0,
        filters.phase,
        filters.mentee_id,
        filters.mentor_id,
        filters.program_id,
        filters.at_risk,
        now,
        now.astimezone(UTC).date(),
        cadences,
        [policy.meeting_allowance(c) for c in cadences],
        policy.first_meeting_within,
        policy.pause_limit,
        request.limit + 1,
        None if filters.program_ids is None else list(filters.program_ids),
    )
    items = [
        summary_item({key: aware(value) for key, value in row.items()}, now)
        for row in rows[: request.limit]
    ]
    keys = [row["opened_position"] for row in rows]
    return {"items": items, "next_cursor": _next_cursor(keys, request, kind=CURSOR_KIND)}


def summary_item(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """One relationship as the list shows it, with its at-risk flags and reasons."""
    flags = {code: bool(row[code]) for code in RISK_CODES}
    return {
        "id": str(row["relationship_id"]),
        "version": row["version"],
        "phase": row["phase"],
        "paused": row["paused"],
        "mentee_id": row["mentee_id"],
        "mentee_name": row["mentee_name"],
        "mentor_id": row["mentor_id"],
        "program_id": row["program_id"],
        "predecessor_id": to_jsonable(row["predecessor_id"]),
        "opened_at": to_jsonable(row["opened_at"]),
        "phase_entered_at": to_jsonable(row["phase_entered_at"]),
        "last_event_at": to_jsonable(row["last_event_at"]),
        "cadence": row["cadence"],
        "last_meeting_at": to_jsonable(row["last_meeting_at"]),
        "meetings_held": row["meetings_held"],
        "open_action_items": len(row["open_action_items"]),
        "outcome": row["outcome"],
        "at_risk": any(flags.values()),
        "risk_flags": flags,
        "risk_reasons": [_REASONS[code](row, now) for code in RISK_CODES if flags[code]],
    }


def _iso(value: datetime | date | None) -> str | None:
    return None if value is None else value.isoformat()


def _no_recent_meeting(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    last = row["last_meeting_at"]
    since = f"since {last.date().isoformat()}" if last else "held yet"
    return {
        "code": "no_recent_meeting",
        "message": f"no meeting {since}; the {row['cadence']} cadence wanted one by "
        f"{row['meeting_due_by'].date().isoformat()}",
        "cadence": row["cadence"],
        "last_meeting_at": _iso(last),
        "due_by": _iso(row["meeting_due_by"]),
    }


def _no_first_meeting(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    established = row["established_at"]
    return {
        "code": "no_first_meeting",
        "message": f"no meeting since it was established on {established.date().isoformat()}",
        "established_at": _iso(established),
        "due_by": _iso(row["first_meeting_due_by"]),
    }


def _overdue_action_items(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    today = now.astimezone(UTC).date()
    overdue = sorted(
        (due, item_id)
        for item_id, due in row["open_action_items"].items()
        if due is not None and date.fromisoformat(due) < today
    )
    count = len(overdue)
    return {
        "code": "overdue_action_items",
        "message": f"{count} open action item{'s' if count != 1 else ''} past due "
        f"(earliest due {overdue[0][0]})",
        "action_item_ids": [item_id for _, item_id in overdue],
        "earliest_due": overdue[0][0],
    }


def _open_high_concern(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    count = row["open_high_concerns"]
    return {
        "code": "open_high_concern",
        "message": f"{count} high-severity concern{'s' if count != 1 else ''} raised in this phase",
        "count": count,
    }


def _paused_too_long(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    since = row["paused_since"]
    days = (now - since).days
    return {
        "code": "paused_too_long",
        "message": f"paused since {since.date().isoformat()} ({days} days)",
        "paused_since": _iso(since),
        "limit_passed_at": _iso(row["pause_limit_at"]),
    }


_REASONS: Mapping[str, Callable[[Mapping[str, Any], datetime], dict[str, Any]]] = {
    "no_recent_meeting": _no_recent_meeting,
    "no_first_meeting": _no_first_meeting,
    "overdue_action_items": _overdue_action_items,
    "open_high_concern": _open_high_concern,
    "paused_too_long": _paused_too_long,
}

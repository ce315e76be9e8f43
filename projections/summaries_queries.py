"""The SQL of the relationship summaries: loading and writing rows, and
the list of ``GET /v1/relationships`` with its at-risk rules, evaluated at
query time (see :mod:`projections.summaries`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from domain import to_jsonable
from domain.risk import DEFAULT_POLICY, RISK_CODES, RiskPolicy, evaluate
from projections.paging import InvalidQuery, page_request
from projections.paging import next_cursor as _next_cursor
from projections.risk_sql import numbered, parameters, template
from projections.sql import aware, insert_rows, json_rows
from projections.summaries_fold import Summary
from workflows import PHASES

NAME = "relationship_summary"
TABLE = "relationship_summaries"
CURSOR_KIND = "relationships"

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
    "phase_entered_position": "bigint",
    "meeting_clock_at": "timestamptz",
    "meeting_clock_position": "bigint",
    "action_item_positions": "jsonb",
    "open_concerns": "jsonb",
    "paused_position": "bigint",
    "expected_resume": "date",
    "risk_codes": "text[]",
    "deliverables": "jsonb",
    "earliest_deliverable_due": "date",
    "deliverables_position": "bigint",
}
COLUMNS = tuple(f.name for f in dataclasses.fields(Summary))
assert tuple(_COLUMN_TYPES) == COLUMNS, "column types must follow the Summary fields"


_UPSERT = (
    insert_rows(TABLE, COLUMNS)
    + " ON CONFLICT (relationship_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS if c != "relationship_id")
)
"""One set-based upsert of a whole batch's rows, sent as one JSON array."""
_SELECTED = ", ".join(f"s.{column}" for column in COLUMNS)
_LOAD = f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE relationship_id = ANY($1::uuid[])"  # noqa: S608


_TIMESTAMPTZ = tuple(c for c, t in _COLUMN_TYPES.items() if t == "timestamptz")
_TIMESTAMPTZ_AT = tuple(COLUMNS.index(c) for c in _TIMESTAMPTZ)


def _from_row(row: asyncpg.Record) -> Summary:
    """A row selected as ``COLUMNS`` (in that order), as a Summary: its
    values as the driver made them (jsonb decoded into fresh objects, UUIDs
    of the driver's class, which equal and hash as the standard ones), the
    infinities made aware (:func:`aware`). No per-column conversions: this
    runs for every row a batch touches and every row a list shows."""
    values = list(row)
    for index in _TIMESTAMPTZ_AT:
        value = values[index]
        if value is not None and value.tzinfo is None:
            values[index] = aware(value)
    return Summary(*values)


async def load_rows(conn: asyncpg.Connection, ids: Sequence[UUID]) -> dict[UUID, Summary]:
    """The stored rows of these relationships (those that have one)."""
    rows = [_from_row(row) for row in await conn.fetch(_LOAD, list(ids))]
    return {row.relationship_id: row for row in rows}


async def upsert_rows(conn: asyncpg.Connection, rows: Sequence[Summary]) -> None:
    """Write these rows with one set-based upsert."""
    await conn.execute(_UPSERT, json_rows(rows, _TIMESTAMPTZ))


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


_EQUALS = ("phase", "mentee_id", "mentor_id", "program_id")


def _list_query(filters: Filters) -> tuple[str, list[Any], list[int]]:
    """The list's SQL with only the filters in use, its parameters but the limit,
    and which risk values follow them.

    One statement per combination of filters, not one with ``$n IS NULL OR``
    for each: a prepared statement soon gets a generic plan, which cannot pick
    the index of the filter in use, and then sorts every matching row to return
    the first page (a cost that grows with the table). Each combination's own
    statement walks its index ``(column, opened_position)`` in order and stops
    at the page's end."""
    conditions = ["s.opened_position > $1"]
    args: list[Any] = []
    for column in _EQUALS:
        value = getattr(filters, column)
        if value is not None:
            args.append(value)
            conditions.append(f"s.{column} = ${len(args) + 1}")
    if filters.program_ids is not None:
        args.append(list(filters.program_ids))
        conditions.append(f"s.program_id = ANY(${len(args) + 1}::text[])")
    risk_params: list[int] = []
    if filters.at_risk is not None:
        args.append(filters.at_risk)
        flag = f"${len(args) + 1}"
        risk_sql, risk_params = numbered(
            " OR ".join(f"({template(code)})" for code in RISK_CODES),
            alias="s",
            first=len(args) + 3,  # after the cursor, these filters and the limit
        )
        conditions.append(f"coalesce({risk_sql}, false) = {flag}")
    sql = (
        f"SELECT {_SELECTED} FROM {TABLE} s WHERE {' AND '.join(conditions)}"  # noqa: S608 - constants only
        f" ORDER BY s.opened_position LIMIT ${len(args) + 2}"
    )
    return sql, args, risk_params


async def list_relationships(
    conn: asyncpg.Connection,
    *,
    filters: Filters = Filters(),
    limit: int | None = None,
    cursor: str | None = None,
    now: datetime,
    policy: RiskPolicy = DEFAULT_POLICY,
) -> dict[str, Any]:
    """A page of summaries, oldest first: ``{"items": [...], "next_cursor": ...}``.

    ``now`` decides the at-risk reasons (pass the service's clock). Raises
    :class:`InvalidQuery` for a bad phase, limit or cursor.
    """
    filters.check()
    request = page_request(limit, cursor, kind=CURSOR_KIND)
    values = parameters(now, policy)
    sql, args, risk_params = _list_query(filters)
    rows = await conn.fetch(
        sql, request.after or 0, *args, request.limit + 1, *(values[i] for i in risk_params)
    )
    items = [summary_item(_from_row(row), now, policy) for row in rows[: request.limit]]
    keys = [row["opened_position"] for row in rows]
    return {"items": items, "next_cursor": _next_cursor(keys, request, kind=CURSOR_KIND)}


async def risk_reasons(
    conn: asyncpg.Connection,
    relationship_id: UUID,
    *,
    now: datetime,
    policy: RiskPolicy = DEFAULT_POLICY,
) -> list[dict[str, Any]] | None:
    """The reasons one relationship is at risk now (None: no summary yet)."""
    row = (await load_rows(conn, [relationship_id])).get(relationship_id)
    if row is None:
        return None
    return [reason.to_json() for reason in evaluate(row.risk_facts(), now, policy)]


def summary_item(
    row: Summary, now: datetime, policy: RiskPolicy = DEFAULT_POLICY
) -> dict[str, Any]:
    """One relationship as the list shows it, with the reasons it is at risk now."""
    reasons = evaluate(row.risk_facts(), now, policy)
    codes = {reason.code for reason in reasons}
    return {
        "id": str(row.relationship_id),
        "version": row.version,
        "phase": row.phase,
        "paused": row.paused,
        "mentee_id": row.mentee_id,
        "mentee_name": row.mentee_name,
        "mentor_id": row.mentor_id,
        "program_id": row.program_id,
        "predecessor_id": to_jsonable(row.predecessor_id),
        "opened_at": to_jsonable(row.opened_at),
        "phase_entered_at": to_jsonable(row.phase_entered_at),
        "last_event_at": to_jsonable(row.last_event_at),
        "cadence": row.cadence,
        "last_meeting_at": to_jsonable(row.last_meeting_at),
        "meetings_held": row.meetings_held,
        "open_action_items": len(row.open_action_items),
        "outcome": row.outcome,
        "at_risk": bool(reasons),
        "risk_flags": {code: code in codes for code in RISK_CODES},
        "risk_reasons": [reason.to_json() for reason in reasons],
        "risk_recorded": list(row.risk_codes),
    }

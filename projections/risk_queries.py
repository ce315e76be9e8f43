"""The risk worker's evaluation pass over the relationship summaries: one
indexed query per at-risk rule (conditions in :mod:`projections.risk_sql`),
one for the relationships flagged before, then only those rows are loaded and
the domain's pure rules (domain/risk.py) say the reasons. Nothing scans every
relationship: the indexes of migration 0080 answer each query.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from domain.risk import RISK_CODES, Reason, RiskChange, RiskPolicy, change, evaluate
from projections.risk_sql import numbered, parameters, template
from projections.summaries_queries import TABLE, load_rows

_JOINED: Mapping[str, str] = {
    # joined with the cut-offs, so the (cadence, meeting_clock_at) index is probed per cadence
    "no_recent_meeting": (
        "SELECT s.relationship_id FROM unnest({p2}::text[], {p3}::timestamptz[])"  # noqa: S608
        f" AS c(cadence, cutoff) JOIN {TABLE} s"
        " ON s.cadence = c.cadence AND s.meeting_clock_at < c.cutoff"
        " WHERE s.phase = 'cultivation' AND NOT s.paused"
    ),
    # and the (phase, phase_entered_at) index per phase with a limit
    "phase_stalled": (
        "SELECT s.relationship_id FROM unnest({p7}::text[], {p8}::timestamptz[])"  # noqa: S608
        f" AS c(phase, cutoff) JOIN {TABLE} s"
        " ON s.phase = c.phase AND s.phase_entered_at < c.cutoff"
    ),
}
_FLAGGED = (
    f"SELECT relationship_id FROM {TABLE}"  # noqa: S608 - a constant
    " WHERE cardinality(risk_codes) > 0 AND phase <> 'concluded'"
)


def rule_queries() -> dict[str, tuple[str, list[int]]]:
    """Each rule's query (the ids of the relationships it holds for), with the
    indices of the :func:`~projections.risk_sql.parameters` it takes."""
    queries = {}
    for code in RISK_CODES:
        sql = _JOINED.get(code) or (
            f"SELECT s.relationship_id FROM {TABLE} s WHERE {template(code)}"  # noqa: S608
        )
        queries[code] = numbered(sql)
    return queries


_QUERIES = rule_queries()


@dataclass(frozen=True)
class Evaluated:
    """One relationship whose set of reasons differs from what was last recorded."""

    relationship_id: UUID
    version: int
    """The summary's version it was evaluated at (the If-Match of the record)."""
    program_id: str | None
    recorded: tuple[str, ...]
    reasons: tuple[Reason, ...]
    change: RiskChange


async def candidates(
    conn: asyncpg.Connection, now: datetime, policy: RiskPolicy
) -> dict[str, set[UUID]]:
    """Per rule, the relationships it holds for now; under ``flagged``, those
    the service flagged before (whose reasons may have gone)."""
    values = parameters(now, policy)
    found: dict[str, set[UUID]] = {}
    for code, (sql, used) in _QUERIES.items():
        rows = await conn.fetch(sql, *(values[i] for i in used))
        found[code] = {_uuid(row[0]) for row in rows}
    found["flagged"] = {_uuid(row[0]) for row in await conn.fetch(_FLAGGED)}
    return found


def _uuid(value: Any) -> UUID:
    return UUID(bytes=value.bytes)


async def evaluation_pass(
    conn: asyncpg.Connection, now: datetime, policy: RiskPolicy
) -> list[Evaluated]:
    """The relationships whose reasons now differ from the codes last recorded,
    with what to record, in a stable order."""
    ids = set().union(*(await candidates(conn, now, policy)).values())
    if not ids:
        return []
    rows = await load_rows(conn, sorted(ids))
    changes: list[Evaluated] = []
    for row in rows.values():
        if row.phase == "concluded":
            continue
        reasons = evaluate(row.risk_facts(), now, policy)
        decided = change(row.risk_codes, reasons)
        if decided is not None:
            changes.append(
                Evaluated(
                    row.relationship_id,
                    row.version,
                    row.program_id,
                    tuple(row.risk_codes),
                    tuple(reasons),
                    decided,
                )
            )
    changes.sort(key=lambda e: str(e.relationship_id))
    return changes

"""The risk worker's evaluation pass over the relationship summaries.

One indexed query per at-risk rule (conditions in :mod:`projections.risk_sql`)
finds the relationships it holds for whose last recorded codes
(``risk_codes``) lack it; one query over the relationships flagged before
(a partial index) finds those where a recorded code no longer holds. Only
those rows, the ones whose set of reasons changed, are loaded, and the
domain's pure rules (domain/risk.py) say the reasons to record. Nothing scans
every relationship, and the work of a pass follows the number of changes, not
the number of relationships (or of those at risk).

But for one thing: the relationships flagged before. Whether each recorded
code still holds is a condition on its row, so a pass that looks at all of
them reads every one (35,000 at the scale bench's full size: 174 ms a pass).
A pass may look only at those whose row changed (``changed_after``: rows
whose ``last_position`` is past it), because time alone never makes a
recorded code stop holding: every condition is "a stored moment is older than
now minus a limit", or no moment at all, and stays true as now moves on until
an event changes the row. What can make one stop holding without such an
event (a clock set back, another policy, a rebuilt row) is left to the
complete passes the risk worker still runs (service/risk/worker.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from domain.risk import RISK_CODES, Reason, RiskChange, RiskPolicy, change, evaluate
from projections.risk_sql import numbered, parameters, template
from projections.summaries_queries import TABLE, load_rows

_NAME = re.compile(r"^[a-z_]{1,40}$")


def _newly(code: str) -> str:
    """The rows whose recorded codes lack ``code`` (the partial indexes' predicate)."""
    return f"NOT ('{code}' = ANY(s.risk_codes))"


def _per_value(
    code: str, column: str, moment: str, where: str, cutoffs: Mapping[str, datetime]
) -> tuple[str, list[Any]]:
    """A rule whose cut-off depends on a value of the row (its cadence, its
    phase): one ``(column = value AND moment < cut-off)`` per value, so the
    planner probes the rule's index once per value (a bitmap OR)."""
    names = sorted(cutoffs)
    for name in names:
        if not _NAME.match(name):
            raise ValueError(f"not a plain name: {name!r}")
    probes = " OR ".join(
        f"(s.{column} = '{name}' AND s.{moment} < ${i}::timestamptz)"
        for i, name in enumerate(names, 1)
    )
    sql = (
        f"SELECT s.relationship_id FROM {TABLE} s"  # noqa: S608 - checked names, constants
        f" WHERE {where} {_newly(code)} AND ({probes or 'false'})"
    )
    return sql, [cutoffs[name] for name in names]


def rule_queries(
    now: datetime, policy: RiskPolicy, changed_after: int | None = None
) -> dict[str, tuple[str, list[Any]]]:
    """Each rule's query, with its arguments at ``now``: the relationships it
    newly holds for (their recorded codes lack it); under ``flagged``, those
    flagged before where a recorded code no longer holds (only those whose row
    changed after position ``changed_after``, if given)."""
    values = parameters(now, policy)
    queries: dict[str, tuple[str, list[Any]]] = {}
    for code in RISK_CODES:
        if code == "no_recent_meeting":
            cutoffs = {c: now - policy.meeting_allowance(c) for c in policy.cadence_periods}
            where = "s.phase = 'cultivation' AND NOT s.paused AND"
            queries[code] = _per_value(code, "cadence", "meeting_clock_at", where, cutoffs)
        elif code == "phase_stalled":
            cutoffs = {phase: now - limit for phase, limit in policy.stall_limits.items()}
            queries[code] = _per_value(code, "phase", "phase_entered_at", "", cutoffs)
        else:
            sql, used = numbered(
                f"SELECT s.relationship_id FROM {TABLE} s"  # noqa: S608 - constants
                f" WHERE {template(code)} AND {_newly(code)}"
            )
            queries[code] = (sql, [values[i] for i in used])
    sql, used = _FLAGGED
    flagged_args = [values[i] for i in used]
    if changed_after is not None:
        flagged_args.append(changed_after)
        sql += f" AND s.last_position > ${len(flagged_args)}"
    queries["flagged"] = (sql, flagged_args)
    return queries


_GONE = " OR ".join(
    f"(('{code}' = ANY(s.risk_codes)) AND NOT coalesce(({template(code)}), false))"
    for code in RISK_CODES
)
_FLAGGED = numbered(
    f"SELECT s.relationship_id FROM {TABLE} s"  # noqa: S608 - constants
    f" WHERE cardinality(s.risk_codes) > 0 AND s.phase <> 'concluded' AND ({_GONE})"
)
"""Relationships flagged before where a recorded code no longer holds."""


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
    conn: asyncpg.Connection, now: datetime, policy: RiskPolicy, changed_after: int | None = None
) -> dict[str, set[UUID]]:
    """Per rule, the relationships it newly holds for now; under ``flagged``,
    those flagged before where a recorded code no longer holds."""
    found: dict[str, set[UUID]] = {}
    for code, (sql, args) in rule_queries(now, policy, changed_after).items():
        rows = await conn.fetch(sql, *args)
        found[code] = {_uuid(row[0]) for row in rows}
    return found


def _uuid(value: Any) -> UUID:
    return UUID(bytes=value.bytes)


async def evaluation_pass(
    conn: asyncpg.Connection,
    now: datetime,
    policy: RiskPolicy,
    *,
    changed_after: int | None = None,
) -> list[Evaluated]:
    """The relationships whose reasons now differ from the codes last recorded,
    with what to record, in a stable order. With ``changed_after``, of the
    relationships flagged before only those whose row changed after that
    position are looked at (see the module's docstring)."""
    ids = set().union(*(await candidates(conn, now, policy, changed_after)).values())
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

"""The SQL of the at-risk rules (domain/risk.py) over the relationship
summaries: which relationships a rule holds for at a moment.

Each rule is one SQL condition over a summary row, with the thresholds
passed as parameters computed from "now" and the policy (cut-offs: "the last
meeting is older than now minus the allowance"), so that the comparison is
on a stored column and an index of migration 0080 (0090) answers it. The listing
(``GET /v1/relationships?at_risk=``) filters with the same conditions; the
risk worker runs one indexed query per rule (projections/risk_queries.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.risk import RISK_CODES, RiskPolicy

TABLE = "relationship_summaries"

_CONDITIONS: Mapping[str, str] = {
    "no_recent_meeting": (
        "{s}.phase = 'cultivation' AND NOT {s}.paused AND EXISTS (SELECT 1 FROM"
        " unnest({p2}::text[], {p3}::timestamptz[]) AS c(cadence, cutoff)"
        " WHERE c.cadence = {s}.cadence AND {s}.meeting_clock_at < c.cutoff)"
    ),
    "no_first_meeting": (
        "{s}.phase = 'cultivation' AND NOT {s}.paused AND {s}.meetings_since_established = 0"
        " AND {s}.meeting_clock_at < {p4}::timestamptz"
    ),
    "overdue_action_items": "{s}.phase <> 'concluded' AND {s}.earliest_open_due < {p1}::date",
    "open_high_concern": "{s}.phase <> 'concluded' AND {s}.open_high_concerns > 0",
    "paused_too_long": (
        "{s}.phase <> 'concluded' AND {s}.paused AND ("
        "({s}.expected_resume IS NULL AND {s}.paused_since < {p5}::timestamptz)"
        " OR ({s}.expected_resume::timestamp AT TIME ZONE 'UTC') < {p6}::timestamptz)"
    ),
    "phase_stalled": (
        "EXISTS (SELECT 1 FROM unnest({p7}::text[], {p8}::timestamptz[]) AS c(phase, cutoff)"
        " WHERE c.phase = {s}.phase AND {s}.phase_entered_at < c.cutoff)"
    ),
    "overdue_deliverable": (
        "{s}.phase = 'cultivation' AND {s}.earliest_deliverable_due < {p1}::date"
    ),
}
"""Per rule, its SQL condition over a summary row ``{s}``; ``{p1}``..``{p8}``
are the parameters of :func:`parameters` (``{p0}``, now, is not needed)."""
assert tuple(_CONDITIONS) == RISK_CODES


def _minus(now: datetime, delta: timedelta) -> datetime:
    try:
        return now - delta
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def parameters(now: datetime, policy: RiskPolicy) -> list[Any]:
    """The values of the conditions' parameters at ``now`` (cut-offs)."""
    cadences = sorted(policy.cadence_periods)
    phases = sorted(policy.stall_limits)
    return [
        now,
        now.astimezone(UTC).date(),
        cadences,
        [_minus(now, policy.meeting_allowance(c)) for c in cadences],
        _minus(now, policy.first_meeting_within),
        _minus(now, policy.pause_limit),
        _minus(now, policy.resume_grace),
        phases,
        [_minus(now, policy.stall_limits[p]) for p in phases],
    ]


_PLACEHOLDER = re.compile(r"\{p(\d)\}")


def numbered(template: str, alias: str = "s", first: int = 1) -> tuple[str, list[int]]:
    """A template's SQL with its parameters numbered from ``$first`` in order
    of first use, and the indices (into :func:`parameters`) of the values to pass."""
    used: list[int] = []

    def number(match: re.Match[str]) -> str:
        index = int(match.group(1))
        if index not in used:
            used.append(index)
        return f"${used.index(index) + first}"

    return _PLACEHOLDER.sub(number, template.replace("{s}", alias)), used


def template(code: str) -> str:
    """A rule's condition template (``{s}``: the row, ``{pN}``: parameter N)."""
    return _CONDITIONS[code]

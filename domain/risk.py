"""The at-risk rules, as pure functions of a relationship's facts and "now".

A mentoring relationship's risks appear as time passes (no meeting within the
agreed cadence, an action item past due) with no event to announce them. The
rules here say, for one relationship, which reasons are true at a moment,
since when, why, and which recorded events make them true (their positions in
the global log: the ``evidence``). They read a :class:`RiskFacts`, the facts
the relationship summaries keep (projections/summaries_fold.py), and never
touch a database: the query side (which relationships to look at, with one
indexed query per rule) is in projections/risk_queries.py, and the worker that
records ``risk.flagged`` / ``risk.cleared`` is in service/risk/.

The rules, each counted from when things happened (``occurred_at``):

- ``no_recent_meeting``: in cultivation and not paused, no meeting within the
  agreed cadence plus its grace, counted from the latest of the last meeting,
  the (re-)establishment and the last resumption;
- ``no_first_meeting``: in cultivation and not paused, no meeting held since
  it was established (or resumed) ``first_meeting_within`` ago;
- ``overdue_action_items``: an open action item's due date has passed;
- ``open_high_concern``: a high-severity concern is open (raised and neither
  resolved by ``concern.resolved`` nor ended by the conclusion);
- ``paused_too_long``: paused beyond the expected return (``expected_resume``)
  plus ``resume_grace``, or, with no expected return, for longer than
  ``pause_limit``;
- ``phase_stalled``: in identification or establishment for longer than that
  phase's limit (``stall_limits``);
- ``overdue_deliverable``: in cultivation, a deliverable of the latest
  agreement (a manuscript, a presentation, a grant) is past its due date.

A concluded relationship is never at risk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, get_args

from domain.jsonable import to_jsonable
from domain.values import RiskCode

RISK_CODES: tuple[str, ...] = get_args(RiskCode)
"""Every rule's code, in the order reasons are listed (the one list is ``RiskCode``)."""

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

STALL_LIMITS: Mapping[str, timedelta] = {
    "identification": timedelta(days=60),
    "establishment": timedelta(days=45),
}


@dataclass(frozen=True)
class RiskPolicy:
    """The thresholds of the rules (settings: ``MENTORFLOW_RISK_*``, docs/operations.md)."""

    cadence_periods: Mapping[str, timedelta] = field(default_factory=lambda: CADENCE_PERIODS)
    cadence_grace: Mapping[str, timedelta] = field(default_factory=lambda: CADENCE_GRACE)
    first_meeting_within: timedelta = timedelta(days=30)
    pause_limit: timedelta = timedelta(days=30)
    """How long a pause with no expected return may last."""
    resume_grace: timedelta = timedelta(days=7)
    """How long after its expected return a pause becomes too long."""
    stall_limits: Mapping[str, timedelta] = field(default_factory=lambda: STALL_LIMITS)
    """Per phase (identification, establishment): how long it may last."""

    def meeting_allowance(self, frequency: str) -> timedelta:
        """How long after the last meeting the next one is overdue."""
        return self.cadence_periods[frequency] + self.cadence_grace.get(frequency, timedelta())


DEFAULT_POLICY = RiskPolicy()


@dataclass(frozen=True)
class OpenConcern:
    severity: str
    raised_at: datetime
    position: int


@dataclass(frozen=True)
class RiskFacts:
    """What the rules read of one relationship (a relationship summary's columns)."""

    phase: str
    paused: bool = False
    phase_entered_at: datetime | None = None
    phase_entered_position: int | None = None
    cadence: str | None = None
    meeting_clock_at: datetime | None = None
    """The latest of the last meeting, the (re-)establishment and the last resumption."""
    meeting_clock_position: int | None = None
    """The event that set ``meeting_clock_at``."""
    last_meeting_at: datetime | None = None
    meetings_since_established: int = 0
    open_action_items: Mapping[str, str | None] = field(default_factory=dict)
    """Open item id -> due date (ISO) or None."""
    action_item_positions: Mapping[str, int] = field(default_factory=dict)
    """Open item id -> position of the meeting that assigned it."""
    open_concerns: Mapping[str, OpenConcern] = field(default_factory=dict)
    paused_since: datetime | None = None
    paused_position: int | None = None
    expected_resume: date | None = None
    deliverables: Mapping[str, str | None] = field(default_factory=dict)
    """The latest agreement's deliverable id -> due date (ISO) or None."""
    deliverables_position: int | None = None
    """The ``agreement.proposed`` event that set ``deliverables``."""


@dataclass(frozen=True)
class Reason:
    """One reason a relationship is at risk."""

    code: str
    since: datetime
    """When it became true."""
    detail: str
    evidence: tuple[int, ...]
    """Positions of the events that make it true."""

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "since": to_jsonable(self.since),
            "detail": self.detail,
            "evidence": list(self.evidence),
        }

    def recorded(self) -> dict[str, Any]:
        """As ``risk.flagged`` records it (``code``, ``since``, ``detail``)."""
        return {"code": self.code, "since": to_jsonable(self.since), "detail": self.detail}


def _midnight_after(day: date) -> datetime:
    """An item due on ``day`` is overdue from the start of the next day (UTC)."""
    return _plus(datetime.combine(day, time(), UTC), timedelta(days=1)) or datetime.max.replace(
        tzinfo=UTC
    )


def _plus(moment: datetime, delta: timedelta) -> datetime | None:
    """``moment + delta``, or None past the last instant a datetime can hold
    (a deadline after 9999-12-31 never comes)."""
    try:
        return moment + delta
    except OverflowError:
        return None


def _positions(*values: int | None) -> tuple[int, ...]:
    return tuple(sorted({v for v in values if v is not None}))


def _active(facts: RiskFacts) -> bool:
    return facts.phase == "cultivation" and not facts.paused


def no_recent_meeting(facts: RiskFacts, now: datetime, policy: RiskPolicy) -> Reason | None:
    clock, cadence = facts.meeting_clock_at, facts.cadence
    if not _active(facts) or clock is None or cadence is None:
        return None
    if cadence not in policy.cadence_periods:
        return None
    due = _plus(clock, policy.meeting_allowance(cadence))
    if due is None or not due < now:
        return None
    last = facts.last_meeting_at
    held = f"since {last.date().isoformat()}" if last else "held yet"
    return Reason(
        "no_recent_meeting",
        due,
        f"no meeting {held}; the {cadence} cadence wanted one by {due.date().isoformat()}",
        _positions(facts.meeting_clock_position),
    )


def no_first_meeting(facts: RiskFacts, now: datetime, policy: RiskPolicy) -> Reason | None:
    clock = facts.meeting_clock_at
    if not _active(facts) or facts.meetings_since_established or clock is None:
        return None
    due = _plus(clock, policy.first_meeting_within)
    if due is None or not due < now:
        return None
    return Reason(
        "no_first_meeting",
        due,
        f"no meeting since it was established (or resumed) on {clock.date().isoformat()}",
        _positions(facts.meeting_clock_position),
    )


def _past_due(due_dates: Mapping[str, str | None], now: datetime) -> list[tuple[str, str]]:
    """(due date, id) of the items whose due date is before today (UTC), earliest first."""
    today = now.astimezone(UTC).date()
    return sorted(
        (due, item_id)
        for item_id, due in due_dates.items()
        if due is not None and date.fromisoformat(due) < today
    )


def overdue_action_items(facts: RiskFacts, now: datetime, policy: RiskPolicy) -> Reason | None:
    if facts.phase == "concluded":
        return None
    overdue = _past_due(facts.open_action_items, now)
    if not overdue:
        return None
    count, earliest = len(overdue), overdue[0][0]
    ids = ", ".join(item_id for _, item_id in overdue)
    return Reason(
        "overdue_action_items",
        _midnight_after(date.fromisoformat(earliest)),
        f"{count} open action item{'s' if count != 1 else ''} past due ({ids};"
        f" earliest due {earliest})",
        _positions(*(facts.action_item_positions.get(item_id) for _, item_id in overdue)),
    )


def open_high_concern(facts: RiskFacts, now: datetime, policy: RiskPolicy) -> Reason | None:
    if facts.phase == "concluded":
        return None
    high = sorted(
        (c.raised_at, concern_id, c.position)
        for concern_id, c in facts.open_concerns.items()
        if c.severity == "high"
    )
    if not high:
        return None
    count = len(high)
    return Reason(
        "open_high_concern",
        high[0][0],
        f"{count} open high-severity concern{'s' if count != 1 else ''}"
        f" ({', '.join(concern_id for _, concern_id, _ in high)})",
        _positions(*(position for _, _, position in high)),
    )


def paused_too_long(facts: RiskFacts, now: datetime, policy: RiskPolicy) -> Reason | None:
    since = facts.paused_since
    if facts.phase == "concluded" or not facts.paused or since is None:
        return None
    expected = facts.expected_resume
    if expected is not None:
        limit = _plus(datetime.combine(expected, time(), UTC), policy.resume_grace)
        why = f"expected back on {expected.isoformat()}"
    else:
        limit = _plus(since, policy.pause_limit)
        why = "no expected return"
    if limit is None or not limit < now:
        return None
    return Reason(
        "paused_too_long",
        limit,
        f"paused since {since.date().isoformat()} ({(now - since).days} days; {why})",
        _positions(facts.paused_position),
    )


def phase_stalled(facts: RiskFacts, now: datetime, policy: RiskPolicy) -> Reason | None:
    limit, entered = policy.stall_limits.get(facts.phase), facts.phase_entered_at
    if limit is None or entered is None:
        return None
    due = _plus(entered, limit)
    if due is None or not due < now:
        return None
    return Reason(
        "phase_stalled",
        due,
        f"in {facts.phase} since {entered.date().isoformat()} ({(now - entered).days} days;"
        f" the limit is {limit.days})",
        _positions(facts.phase_entered_position),
    )


def overdue_deliverable(facts: RiskFacts, now: datetime, policy: RiskPolicy) -> Reason | None:
    if facts.phase != "cultivation":
        return None
    overdue = _past_due(facts.deliverables, now)
    if not overdue:
        return None
    count, earliest = len(overdue), overdue[0][0]
    ids = ", ".join(deliverable_id for _, deliverable_id in overdue)
    return Reason(
        "overdue_deliverable",
        _midnight_after(date.fromisoformat(earliest)),
        f"{count} deliverable{'s' if count != 1 else ''} past due ({ids}; earliest due {earliest})",
        _positions(facts.deliverables_position),
    )


RULES = {
    "no_recent_meeting": no_recent_meeting,
    "no_first_meeting": no_first_meeting,
    "overdue_action_items": overdue_action_items,
    "open_high_concern": open_high_concern,
    "paused_too_long": paused_too_long,
    "phase_stalled": phase_stalled,
    "overdue_deliverable": overdue_deliverable,
}
assert tuple(RULES) == RISK_CODES


def evaluate(facts: RiskFacts, now: datetime, policy: RiskPolicy = DEFAULT_POLICY) -> list[Reason]:
    """The reasons true at ``now``, in :data:`RISK_CODES` order."""
    reasons = (rule(facts, now, policy) for rule in RULES.values())
    return [reason for reason in reasons if reason is not None]


@dataclass(frozen=True)
class RiskChange:
    """What the service records when a relationship's set of reasons changes."""

    event_type: str
    """``risk.flagged`` (the reasons now true) or ``risk.cleared`` (codes no longer true)."""
    data: dict[str, Any]
    codes: tuple[str, ...]
    """The reason codes true afterwards."""


def change(recorded: Sequence[str], reasons: Sequence[Reason]) -> RiskChange | None:
    """What to record given the codes last recorded and the reasons true now:
    nothing when the set of codes is the same; ``risk.flagged`` with every
    reason now true when a code is new; ``risk.cleared`` when codes only went."""
    before, now = set(recorded), {reason.code for reason in reasons}
    codes = tuple(reason.code for reason in reasons)
    if now == before:
        return None
    if now - before:
        return RiskChange("risk.flagged", {"reasons": [r.recorded() for r in reasons]}, codes)
    gone = [code for code in RISK_CODES if code in before - now]
    return RiskChange("risk.cleared", {"codes": gone}, codes)

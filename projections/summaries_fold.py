"""The fold of the relationship summaries: events -> row changes (pure).

:func:`apply` folds one event into a relationship's row (a :class:`Summary`).
Facts the aggregate decided (a phase change, an outcome) are read from the
event (its metadata, ``concluded_outcome``), never re-derived here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from uuid import UUID

from domain import Relationship, erase_text
from domain.risk import OpenConcern, RiskFacts
from projections.base import ProjectedEvent


@dataclass(slots=True)
class Summary:
    """One row of ``relationship_summaries`` (field order = column order)."""

    relationship_id: UUID
    opened_position: int
    version: int
    last_position: int
    mentee_id: str
    mentee_name: str | None
    program_id: str | None
    predecessor_id: UUID | None
    mentor_id: str | None
    phase: str
    paused: bool
    paused_since: datetime | None
    resumed_at: datetime | None
    opened_at: datetime
    phase_entered_at: datetime
    last_event_at: datetime
    established_at: datetime | None
    cadence: str | None
    last_meeting_at: datetime | None
    meetings_held: int
    meetings_since_established: int
    open_action_items: dict[str, str | None]
    earliest_open_due: date | None
    concerns: int
    open_high_concerns: int
    outcome: str | None
    phase_entered_position: int | None = None
    meeting_clock_at: datetime | None = None
    """The latest of the last meeting, the (re-)establishment and the last resumption."""
    meeting_clock_position: int | None = None
    action_item_positions: dict[str, int] = field(default_factory=dict)
    """Open action item id -> position of the meeting that assigned it."""
    open_concerns: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Open concern id -> ``{severity, raised_at (ISO), position}``."""
    paused_position: int | None = None
    expected_resume: date | None = None
    risk_codes: list[str] = field(default_factory=list)
    """The reason codes the service last recorded (risk.flagged / risk.cleared)."""
    deliverables: dict[str, str | None] = field(default_factory=dict)
    """The latest agreement's deliverable id -> due date (ISO) or None."""
    earliest_deliverable_due: date | None = None
    deliverables_position: int | None = None
    """The ``agreement.proposed`` event that set ``deliverables``."""

    def risk_facts(self) -> RiskFacts:
        """What the at-risk rules read of this row."""
        return RiskFacts(
            phase=self.phase,
            paused=self.paused,
            phase_entered_at=self.phase_entered_at,
            phase_entered_position=self.phase_entered_position,
            cadence=self.cadence,
            meeting_clock_at=self.meeting_clock_at,
            meeting_clock_position=self.meeting_clock_position,
            last_meeting_at=self.last_meeting_at,
            meetings_since_established=self.meetings_since_established,
            open_action_items=self.open_action_items,
            action_item_positions=self.action_item_positions,
            open_concerns={
                concern_id: OpenConcern(
                    c["severity"], datetime.fromisoformat(c["raised_at"]), c["position"]
                )
                for concern_id, c in self.open_concerns.items()
            },
            paused_since=self.paused_since,
            paused_position=self.paused_position,
            expected_resume=self.expected_resume,
            deliverables=self.deliverables,
            deliverables_position=self.deliverables_position,
        )


def _opened(event: ProjectedEvent) -> Summary:
    opened = event.event
    assert isinstance(opened, Relationship.Opened)
    at = event.occurred_at
    return Summary(
        relationship_id=event.relationship_id,
        opened_position=event.position,
        version=event.version,
        last_position=event.position,
        mentee_id=opened.mentee_id,
        mentee_name=opened.mentee_name,
        program_id=opened.program_id,
        predecessor_id=opened.predecessor_id,
        mentor_id=None,
        phase="reflection",
        paused=False,
        paused_since=None,
        resumed_at=None,
        opened_at=at,
        phase_entered_at=at,
        last_event_at=at,
        established_at=None,
        cadence=None,
        last_meeting_at=None,
        meetings_held=0,
        meetings_since_established=0,
        open_action_items={},
        earliest_open_due=None,
        concerns=0,
        open_high_concerns=0,
        outcome=None,
        phase_entered_position=event.position,
    )


def _meeting_clock(s: Summary, at: datetime, position: int) -> None:
    """The meeting rules count from the latest of these moments."""
    if s.meeting_clock_at is None or at >= s.meeting_clock_at:
        s.meeting_clock_at, s.meeting_clock_position = at, position


def _earliest_due(items: Mapping[str, str | None]) -> date | None:
    dues = [date.fromisoformat(due) for due in items.values() if due is not None]
    return min(dues) if dues else None


def _mentor_selected(s: Summary, e: ProjectedEvent) -> None:
    event = e.event
    assert isinstance(event, Relationship.MentorSelected)
    s.mentor_id = event.mentor_id


def _agreement_proposed(s: Summary, e: ProjectedEvent) -> None:
    event = e.event
    assert isinstance(event, Relationship.AgreementProposed)
    s.cadence = event.cadence.frequency
    # the latest agreement's deliverables (none in events recorded before they existed)
    s.deliverables = {
        d.id: None if d.due_date is None else d.due_date.isoformat()
        for d in event.deliverables or ()
    }
    s.earliest_deliverable_due = _earliest_due(s.deliverables)
    s.deliverables_position = e.position if s.deliverables else None


def _meeting_held(s: Summary, e: ProjectedEvent) -> None:
    event = e.event
    assert isinstance(event, Relationship.MeetingHeld)
    last = s.last_meeting_at
    s.last_meeting_at = event.held_at if last is None else max(last, event.held_at)
    s.meetings_held += 1
    s.meetings_since_established += 1
    _meeting_clock(s, event.held_at, e.position)
    for item in event.action_items or ():
        s.open_action_items[item.id] = None if item.due_date is None else item.due_date.isoformat()
        s.action_item_positions[item.id] = e.position
    s.earliest_open_due = _earliest_due(s.open_action_items)


def _action_item_completed(s: Summary, e: ProjectedEvent) -> None:
    event = e.event
    assert isinstance(event, Relationship.ActionItemCompleted)
    s.open_action_items.pop(event.action_item_id, None)
    s.action_item_positions.pop(event.action_item_id, None)
    s.earliest_open_due = _earliest_due(s.open_action_items)


def _concern_raised(s: Summary, e: ProjectedEvent) -> None:
    event = e.event
    assert isinstance(event, Relationship.ConcernRaised)
    s.concerns += 1
    # Events recorded before concerns had ids: the id the aggregate gives them.
    concern_id = event.concern_id or f"concern-{s.concerns}"
    s.open_concerns[concern_id] = {
        "severity": event.severity,
        "raised_at": e.occurred_at.isoformat(),
        "position": e.position,
    }
    _count_open_high(s)


def _concern_resolved(s: Summary, e: ProjectedEvent) -> None:
    event = e.event
    assert isinstance(event, Relationship.ConcernResolved)
    s.open_concerns.pop(event.concern_id, None)
    _count_open_high(s)


def _count_open_high(s: Summary) -> None:
    s.open_high_concerns = sum(1 for c in s.open_concerns.values() if c["severity"] == "high")


def _risk_flagged(s: Summary, e: ProjectedEvent) -> None:
    event = e.event
    assert isinstance(event, Relationship.RiskFlagged)
    s.risk_codes = [reason.code for reason in event.reasons]


def _risk_cleared(s: Summary, e: ProjectedEvent) -> None:
    event = e.event
    assert isinstance(event, Relationship.RiskCleared)
    s.risk_codes = [code for code in s.risk_codes if code not in event.codes]


def _paused(s: Summary, e: ProjectedEvent) -> None:
    event = e.event
    assert isinstance(event, Relationship.RelationshipPaused)
    s.paused_since = e.occurred_at
    s.paused_position = e.position
    s.expected_resume = event.expected_resume


def _resumed(s: Summary, e: ProjectedEvent) -> None:
    s.resumed_at = e.occurred_at
    _meeting_clock(s, e.occurred_at, e.position)


def _erased(s: Summary, e: ProjectedEvent) -> None:
    # the row's only erasable text; a rebuild decodes "[erased]" from the
    # opening event already, and this gives the same row
    s.mentee_name = erase_text(s.mentee_name)


_EVOLVE: Mapping[str, Callable[[Summary, ProjectedEvent], None]] = {
    "mentor.selected": _mentor_selected,
    "agreement.proposed": _agreement_proposed,
    "meeting.held": _meeting_held,
    "action_item.completed": _action_item_completed,
    "concern.raised": _concern_raised,
    "concern.resolved": _concern_resolved,
    "risk.flagged": _risk_flagged,
    "risk.cleared": _risk_cleared,
    "relationship.paused": _paused,
    "relationship.resumed": _resumed,
    "personal_data.erased": _erased,
}
"""How the event types that change more than the envelope's facts change a row."""
DECODED = frozenset({"relationship.opened", *_EVOLVE}) - {
    "relationship.resumed",
    "personal_data.erased",
}
"""The event types whose payload the fold reads, besides the events that
conclude a relationship (their outcome, see :func:`needs_payload`)."""


def needs_payload(event: ProjectedEvent) -> bool:
    """Whether :func:`apply` reads the event's payload (the others change the
    row through their metadata alone: version, time, phase)."""
    return event.type in DECODED or event.meta.concludes


def _enter(s: Summary, phase: str, e: ProjectedEvent) -> None:
    """A phase change. Concerns stay open until resolved or the relationship
    concludes; a concluded relationship is never at risk."""
    at = e.occurred_at
    s.phase, s.phase_entered_at, s.phase_entered_position = phase, at, e.position
    if phase == "cultivation":
        s.established_at = at
        s.meetings_since_established = 0
        _meeting_clock(s, at, e.position)
    if phase == "concluded":
        s.open_concerns, s.open_high_concerns, s.risk_codes = {}, 0, []


def apply(summary: Summary | None, event: ProjectedEvent) -> Summary | None:
    """The row after ``event`` (None while the relationship was never opened:
    its later events have nothing to summarise)."""
    if event.type == "relationship.opened":
        return _opened(event)
    if summary is None:
        return None
    summary.version, summary.last_position = event.version, event.position
    summary.last_event_at = event.occurred_at
    evolve = _EVOLVE.get(event.type)
    if evolve is not None:
        evolve(summary, event)
    outcome = event.outcome  # the event says what outcome it concluded with
    if outcome is not None:
        summary.outcome = outcome
    meta = event.meta
    if summary.paused != (paused := meta.paused_after(summary.paused)):
        summary.paused = paused  # started or ended, by the aggregate's rule
        if not paused:
            summary.paused_since = summary.paused_position = summary.expected_resume = None
    if meta.changes_phase and meta.to_phase is not None:
        _enter(summary, meta.to_phase, event)
    return summary

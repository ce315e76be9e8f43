"""The fold of the relationship summaries: events -> row changes (pure).

:func:`apply` folds one event into a relationship's row (a :class:`Summary`).
Facts the aggregate decided (a phase change, an outcome) are read from the
event (its metadata, ``concluded_outcome``), never re-derived here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID

from domain import Relationship, erase_text
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
    )


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


def _meeting_held(s: Summary, e: ProjectedEvent) -> None:
    event = e.event
    assert isinstance(event, Relationship.MeetingHeld)
    last = s.last_meeting_at
    s.last_meeting_at = event.held_at if last is None else max(last, event.held_at)
    s.meetings_held += 1
    s.meetings_since_established += 1
    for item in event.action_items or ():
        s.open_action_items[item.id] = None if item.due_date is None else item.due_date.isoformat()
    s.earliest_open_due = _earliest_due(s.open_action_items)


def _action_item_completed(s: Summary, e: ProjectedEvent) -> None:
    event = e.event
    assert isinstance(event, Relationship.ActionItemCompleted)
    s.open_action_items.pop(event.action_item_id, None)
    s.earliest_open_due = _earliest_due(s.open_action_items)


def _concern_raised(s: Summary, e: ProjectedEvent) -> None:
    event = e.event
    assert isinstance(event, Relationship.ConcernRaised)
    s.concerns += 1
    if event.severity == "high":
        s.open_high_concerns += 1


def _paused(s: Summary, e: ProjectedEvent) -> None:
    s.paused_since = e.occurred_at


def _resumed(s: Summary, e: ProjectedEvent) -> None:
    s.resumed_at = e.occurred_at


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
    "relationship.paused": _paused,
    "relationship.resumed": _resumed,
    "personal_data.erased": _erased,
}
"""How the event types that change more than the envelope's facts change a row."""
DECODED = frozenset({"relationship.opened", *_EVOLVE}) - {
    "relationship.paused",
    "relationship.resumed",
    "personal_data.erased",
}
"""The event types whose payload the fold reads, besides the events that
conclude a relationship (their outcome, see :func:`needs_payload`)."""


def needs_payload(event: ProjectedEvent) -> bool:
    """Whether :func:`apply` reads the event's payload (the others change the
    row through their metadata alone: version, time, phase)."""
    return event.type in DECODED or event.meta.concludes


def _enter(s: Summary, phase: str, at: datetime) -> None:
    """A phase change; here it also settles the concerns raised in the phase
    that is left (the at-risk rule's notion of an open concern)."""
    s.phase, s.phase_entered_at = phase, at
    s.open_high_concerns = 0
    if phase == "cultivation":
        s.established_at = at
        s.meetings_since_established = 0


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
            summary.paused_since = None
    if meta.changes_phase and meta.to_phase is not None:
        _enter(summary, meta.to_phase, event.occurred_at)
    return summary

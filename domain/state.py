"""The parts of a relationship's state that are more than a single value.

These records are what applying events builds up; they hold no confidential
fields (notes, comments, details, values and work style stay in the events),
so the state can be shown to every role. They are plain dataclasses of JSON
friendly values (no sets or tuples) so that a snapshot of the aggregate
round-trips through the mapper unchanged. What only grows with time (past
meetings, completed action items, feedback) is kept as ids and counts, so a
snapshot of a long relationship stays small and quick to load.
"""

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from domain.values import (
    ActionItem,
    AgendaOwner,
    Cadence,
    ConcernCategory,
    DeclineReason,
    Deliverable,
    Goal,
    GoalStatus,
    PartyRole,
    ProposedBy,
    ReflectionKind,
    Severity,
    TimeCommitment,
)
from workflows import Phase

CandidateStatus = Literal["proposed", "met", "declined"]
PastMeeting = Literal["held", "missed"]


@dataclass(slots=True)
class Candidate:
    """A mentor the mentee considered during identification."""

    mentor_id: str
    status: CandidateStatus
    proposed_at: datetime
    proposed_by: ProposedBy | None = None
    match_score: float | None = None
    met_at: datetime | None = None
    declined_by: PartyRole | None = None
    decline_reason: DeclineReason | None = None


@dataclass(slots=True)
class AgreementVersion:
    """One version of the agreement; establishment needs the latest one signed by both."""

    version: int
    proposed_at: datetime
    establishment_round: int
    """Which entry into establishment it was proposed in (a refinement starts a new one)."""
    objectives: list[str]
    goals: list[Goal]
    cadence: Cadence
    start_date: date
    end_date: date
    agenda_owner: AgendaOwner | None = None
    communication_channel: str | None = None
    feedback_plan: str | None = None
    confidentiality: str | None = None
    boundaries: str | None = None
    time_commitment: TimeCommitment | None = None
    deliverables: list[Deliverable] = field(default_factory=list)
    signatures: dict[str, datetime] = field(default_factory=dict)
    """When each party (``mentee``, ``mentor``) signed."""


@dataclass(slots=True)
class GoalProgress:
    status: GoalStatus
    updated_at: datetime
    note: str | None = None


@dataclass(slots=True)
class TrackedActionItem:
    """An open action item and where it came from (completed ones are only ids)."""

    item: ActionItem
    meeting_id: str | None
    assigned_at: datetime


@dataclass(slots=True)
class Meeting:
    """A scheduled meeting that has not happened yet (past ones are only ids)."""

    meeting_id: str
    scheduled_for: datetime
    agenda: list[str] | None = None


@dataclass(slots=True)
class ReflectionNote:
    """That a reflection was recorded (its confidential content is not kept here)."""

    kind: ReflectionKind
    author_role: PartyRole
    phase: Phase
    occurred_at: datetime
    development_areas: list[str]


@dataclass(slots=True)
class ConcernNote:
    category: ConcernCategory
    severity: Severity
    phase: Phase
    raised_at: datetime
    concern_id: str | None = None
    resolution: str | None = None
    """How it was resolved (``concern.resolved``); None while open."""


@dataclass(slots=True)
class Pause:
    reason: str
    since: datetime
    expected_resume: date | None = None

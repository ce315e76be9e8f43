"""Value types of the mentoring domain: vocabularies, constraints and small value objects.

Vocabularies are ``Literal`` string types rather than ``Enum``s: the values
travel as plain JSON strings, come back from the event store as the same
plain strings (a ``(str, Enum)`` would silently decode as ``str``), and mypy
still checks them. The annotations of the event classes, with the constraint
markers below in ``Annotated[...]``, are the schema that raw request data is
validated against (see :mod:`domain.schema`).
"""

from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Literal

# --- vocabularies (docs/api.md, "Event types and their data") ---------------------------

ActorRole = Literal["mentee", "mentor", "program_admin", "system"]
PartyRole = Literal["mentee", "mentor"]
ReflectionKind = Literal["initial", "interim", "closing"]
ProposedBy = Literal["mentee", "program", "matching"]
DeclineReason = Literal["no_capacity", "expertise_mismatch", "schedule", "other"]
GoalHorizon = Literal["short", "long"]
Frequency = Literal["weekly", "biweekly", "monthly", "quarterly"]
MeetingMode = Literal["in_person", "video", "phone"]
AgendaOwner = Literal["mentee", "mentor", "shared"]
GoalStatus = Literal["on_track", "at_risk", "achieved", "dropped"]
ConcernCategory = Literal["mismatch", "unresponsive", "boundary", "wellbeing", "bias", "other"]
Severity = Literal["low", "medium", "high"]
Resolution = Literal["addressed", "no_action_needed", "referred", "withdrawn"]
DeliverableKind = Literal["manuscript", "presentation", "grant", "other"]
AdvocacyKind = Literal["introduction", "nomination", "co_authorship", "opportunity", "protection"]
RiskCode = Literal[
    "no_recent_meeting",
    "no_first_meeting",
    "overdue_action_items",
    "open_high_concern",
    "paused_too_long",
    "phase_stalled",
    "overdue_deliverable",
]
ReviewTrigger = Literal[
    "goals_achieved", "circumstances_changed", "term_ended", "scheduled_review", "mismatch"
]
Outcome = Literal[
    "goals_achieved", "partially_achieved", "circumstances_changed", "mismatch", "other"
]


# --- constraint markers, read by domain.schema ---------------------------------------


@dataclass(frozen=True, slots=True)
class NonBlank:
    """The string must contain something other than whitespace."""


@dataclass(frozen=True, slots=True)
class MaxLength:
    """The string may hold at most ``limit`` characters."""

    limit: int


@dataclass(frozen=True, slots=True)
class Between:
    """The number must lie in ``[low, high]``."""

    low: float
    high: float


@dataclass(frozen=True, slots=True)
class MinItems:
    """The list must hold at least ``count`` items."""

    count: int


@dataclass(frozen=True, slots=True)
class Assigned:
    """Set by the aggregate, never by the client (e.g. an agreement's version)."""


@dataclass(frozen=True, slots=True)
class Erasable:
    """Free text that may describe a person: stored encrypted under the
    relationship's data key when a cipher key is configured, and reads
    ``"[erased]"`` once the relationship's personal data is erased (see
    :mod:`domain.erasure`, docs/erasure.md). Ids, codes, dates and numbers are
    never erasable: the lifecycle and the read models keep working on them."""


Id = Annotated[str, NonBlank(), MaxLength(200)]
"""An identifier chosen by the caller (mentor, goal, meeting, action item...)."""
Text = Annotated[str, MaxLength(20_000)]
"""Free text; may be empty."""
RequiredText = Annotated[str, NonBlank(), MaxLength(20_000)]
"""Free text that must say something."""
Label = Annotated[str, NonBlank(), MaxLength(500)]
"""A short non-empty string in a list (development area, objective, topic...)."""
Minutes = Annotated[int, Between(1, 24 * 60)]
HoursPerMonth = Annotated[float, Between(0, 744)]
"""Hours a month (a month has at most 744 hours)."""

PersonalText = Annotated[str, MaxLength(20_000), Erasable()]
"""Free text that may describe a person (erasable); may be empty."""
RequiredPersonalText = Annotated[str, NonBlank(), MaxLength(20_000), Erasable()]
"""Free text that may describe a person (erasable) and must say something."""
PersonalLabel = Annotated[str, NonBlank(), MaxLength(500), Erasable()]
"""A short non-empty string in a list that may describe a person (erasable)."""


# --- value objects ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it, as told by the posting system."""

    id: Id
    role: ActorRole


@dataclass(frozen=True, slots=True)
class Goal:
    """A goal of an agreement (SMART: the guard wants a measure and a target date)."""

    id: Id
    statement: RequiredPersonalText
    horizon: GoalHorizon | None = None
    measure: PersonalText | None = None
    target_date: date | None = None


@dataclass(frozen=True, slots=True)
class Cadence:
    """How often and how the pair meets."""

    frequency: Frequency
    duration_minutes: Minutes | None = None
    mode: MeetingMode | None = None
    location: PersonalText | None = None


@dataclass(frozen=True, slots=True)
class ActionItem:
    """A task agreed at a meeting."""

    id: Id
    description: RequiredPersonalText
    owner: PartyRole
    due_date: date | None = None


@dataclass(frozen=True, slots=True)
class TimeCommitment:
    """How much time each party commits to the relationship (seed 002)."""

    mentor_hours_per_month: HoursPerMonth | None = None
    mentee_hours_per_month: HoursPerMonth | None = None


@dataclass(frozen=True, slots=True)
class Deliverable:
    """A product the pair commits to (a manuscript, a talk, a grant), with who
    is credited how (``authorship``, e.g. "mentee first, mentor senior")."""

    id: Id
    description: RequiredPersonalText
    kind: DeliverableKind | None = None
    authorship: PersonalText | None = None
    due_date: date | None = None


@dataclass(frozen=True, slots=True)
class RiskReason:
    """Why a relationship is at risk, as ``risk.flagged`` records it."""

    code: RiskCode
    since: datetime
    detail: Text | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
    """Who, when and from where: carried by every event besides its data.

    ``source`` is the name of the API token (set by the service, not the
    client); ``occurred_at`` is when it happened in the world (the time it was
    recorded is the event's ``timestamp``).
    """

    occurred_at: datetime
    actor: Actor | None = None
    source: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    received_at: datetime | None = None
    """When the service received the request: the "now" that fields which
    cannot lie in the future are held to. Not stored (the event's own
    timestamp records when it was recorded); None skips that check."""

    def __post_init__(self) -> None:
        if self.occurred_at.utcoffset() is None:
            raise ValueError("occurred_at must be timezone-aware")

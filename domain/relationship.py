"""The ``Relationship`` aggregate and its events, one class per API event type.

Each event class says, in one place, everything about its event type:

- ``api_type``: the dotted type of the API (``meeting.held``);
- its typed fields: the schema that request data is validated against;
- ``references``: the checks that depend on the relationship's current state
  (the action item must be open, the goal must exist, ...);
- ``evolve``: how it changes the relationship when applied.

Applying an event never checks anything: events are facts, and replaying a
history must work even after the rules have changed. All checks happen in
:meth:`Relationship.record`, before an event exists, in this order: unknown
type, not accepted in the phase (409), invalid data (422), guard unmet (422).
"""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Annotated, Any, ClassVar, cast
from uuid import UUID

from eventsourcing.domain import Aggregate

import workflows
from domain.erasure import erase_text, transform_fields
from domain.errors import FieldError, GuardFailed, InvalidTransition, UnmetRule, ValidationFailed
from domain.metadata import ENVELOPE_FIELDS, changes_phase, paused_after
from domain.schema import validator_for
from domain.state import (
    AgreementVersion,
    Candidate,
    ConcernNote,
    GoalProgress,
    Meeting,
    PastMeeting,
    Pause,
    ReflectionNote,
    TrackedActionItem,
)
from domain.values import (
    ActionItem,
    Actor,
    AdvocacyKind,
    AgendaOwner,
    Assigned,
    Between,
    Cadence,
    ConcernCategory,
    DeclineReason,
    Deliverable,
    Envelope,
    Goal,
    GoalStatus,
    Id,
    MaxLength,
    MinItems,
    Minutes,
    NonBlank,
    Outcome,
    PartyRole,
    PersonalLabel,
    PersonalText,
    ProposedBy,
    ReflectionKind,
    RequiredPersonalText,
    Resolution,
    ReviewTrigger,
    RiskCode,
    RiskReason,
    Severity,
    TimeCommitment,
)
from workflows import AgreementFacts, LifecycleFacts, Phase


class Relationship(Aggregate):
    """A mentoring relationship, from the mentee's self-reflection to its conclusion."""

    erased: bool = False
    """Whether its personal data was erased (``personal_data.erased``); a class
    default too, so snapshots taken before the attribute existed still load."""

    def __init__(self) -> None:
        """The empty relationship that :class:`Opened` then fills in."""
        self.mentee_id: str = ""
        self.mentee_name: str | None = None
        self.program_id: str | None = None
        self.predecessor_id: UUID | None = None
        self.mentor_id: str | None = None
        self.phase: Phase = "reflection"
        self.pause: Pause | None = None
        self.opened_at: datetime | None = None
        self.phase_entered_at: dict[Phase, datetime] = {}
        self.establishment_round = 0
        self.reflections: list[ReflectionNote] = []
        self.mentee_initial_development_areas = 0
        self.refinement_first_reflection = 0
        """Index in ``reflections`` of the first one of the current refinement."""
        self.candidates: dict[str, Candidate] = {}
        self.agreements: list[AgreementVersion] = []
        self.goal_progress: dict[str, GoalProgress] = {}
        self.open_items: dict[str, TrackedActionItem] = {}
        self.closed_item_ids: list[str] = []
        self.meetings: dict[str, Meeting] = {}
        """Scheduled meetings that have not taken place yet."""
        self.past_meetings: dict[str, PastMeeting] = {}
        """Ids of scheduled meetings that were held or missed."""
        self.meetings_held = 0
        self.meetings_missed = 0
        self.last_meeting_at: datetime | None = None
        self.feedback_count: dict[str, int] = {}
        self.feedback_rating_total: dict[str, int] = {}
        """Per role (``mentee``/``mentor``): how many ratings, and their sum."""
        self.concerns: list[ConcernNote] = []
        self.advocacy_kinds: list[str] = []
        """The kind of each ``advocacy.recorded``, in order (read through
        ``recorded_advocacy``: snapshots taken before it existed lack it)."""
        self.review_trigger: ReviewTrigger | None = None
        self.outcome: str | None = None
        self.outcome_summary: str | None = None
        self.erased = False

    # --- reading the state --------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self.pause is not None

    @property
    def agreement(self) -> AgreementVersion | None:
        """The latest agreement version (the one that counts)."""
        return self.agreements[-1] if self.agreements else None

    def agreement_version(self, version: int) -> AgreementVersion | None:
        if 1 <= version <= len(self.agreements):
            return self.agreements[version - 1]
        return None

    def concern(self, concern_id: str) -> ConcernNote | None:
        """The concern with this id (open or resolved), if any."""
        return next((c for c in self.concerns if c.concern_id == concern_id), None)

    @property
    def open_concerns(self) -> list[ConcernNote]:
        """Concerns not resolved yet (a concluded relationship has none open)."""
        if self.phase == "concluded":
            return []
        return [c for c in self.concerns if c.resolution is None]

    @property
    def recorded_advocacy(self) -> list[str]:
        """The kind of each ``advocacy.recorded``, in order."""
        return list(vars(self).get("advocacy_kinds", ()))

    @property
    def advocacy(self) -> dict[str, int]:
        """Per kind (``introduction``...), how many times the mentor advocated."""
        counts: dict[str, int] = {}
        for kind in self.recorded_advocacy:
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    @property
    def goals(self) -> list[Goal]:
        agreement = self.agreement
        return list(agreement.goals) if agreement else []

    @property
    def open_action_items(self) -> list[TrackedActionItem]:
        return list(self.open_items.values())

    def allowed_events(self) -> list[str]:
        """Event types a client may post now (phase and pause; data-dependent
        guards aside). Those the service records itself are left out: no client
        may post them, whatever the phase."""
        return client_events(workflows.allowed_events(self))

    def facts(self) -> LifecycleFacts:
        """What the lifecycle's guards need to know, as a plain value."""
        agreement = self.agreement
        return LifecycleFacts(
            phase=self.phase,
            paused=self.paused,
            mentee_id=self.mentee_id,
            mentee_initial_development_areas=self.mentee_initial_development_areas,
            candidates_proposed=frozenset(self.candidates),
            candidates_met=frozenset(
                c.mentor_id for c in self.candidates.values() if c.met_at is not None
            ),
            candidates_declined=frozenset(
                c.mentor_id for c in self.candidates.values() if c.status == "declined"
            ),
            latest_agreement=None if agreement is None else _agreement_facts(self, agreement),
            refinement_reflections=frozenset(
                (note.author_role, note.kind) for note in self.refinement_reflections
            ),
            concerns_raised=frozenset(c.concern_id for c in self.concerns if c.concern_id),
            concerns_open=frozenset(c.concern_id for c in self.open_concerns if c.concern_id),
        )

    @property
    def refinement_reflections(self) -> list[ReflectionNote]:
        """Reflections recorded since the current refinement began (empty outside it)."""
        if self.phase != "refinement":
            return []
        return self.reflections[self.refinement_first_reflection :]

    # --- commands -----------------------------------------------------------------

    @classmethod
    def open(
        cls, data: Mapping[str, Any] | None, envelope: Envelope, *, id: UUID | None = None
    ) -> "Relationship":
        """Open a relationship in ``reflection`` (``POST /v1/relationships``).

        ``data`` holds ``mentee_id`` (required), ``program_id``, ``mentee_name``
        and ``predecessor_id``; whether the predecessor exists and is concluded
        is for the caller to check (it needs the store). Raises
        :class:`ValidationFailed`.
        """
        fields = cls.Opened.parse(data, path="")
        return cls._create(
            cls.Opened,
            id=id,
            **fields,
            **_envelope_fields(envelope),
            from_phase="reflection",
            to_phase="reflection",
        )

    def record(
        self, event_type: str, data: Mapping[str, Any] | None, envelope: Envelope
    ) -> "Relationship.Event":
        """Decide and record one lifecycle event (``POST /v1/relationships/{id}/events``).

        Returns the new (pending) event, already applied to this aggregate.
        Raises, in this order: :class:`ValidationFailed` (unknown type, path
        ``type``), :class:`InvalidTransition`, :class:`ValidationFailed` (data),
        :class:`GuardFailed`. Nothing is recorded when it raises.
        """
        event_class = _recordable_class(event_type)
        if not workflows.accepts(self, event_type):
            raise InvalidTransition(event_type, self.phase, self.paused, self.allowed_events())
        fields = event_class.parse(data)
        reference_errors = [
            *event_class.references(self, fields),
            *_not_in_future(event_class, fields, envelope.received_at),
        ]
        if reference_errors:
            raise ValidationFailed(reference_errors)
        actor_role = envelope.actor.role if envelope.actor else None
        facts = (
            replace(self.facts(), actor_role=actor_role)
            if workflows.guarded(self.phase, event_type)
            else LifecycleFacts(self.phase, self.paused, actor_role=actor_role)  # all it reads
        )
        decision = workflows.check(event_type, facts, fields)
        if isinstance(decision, workflows.GuardUnmet):
            raise GuardFailed(
                event_type,
                self.phase,
                [UnmetRule(info.name, info.unmet) for info in decision.unmet],
            )
        if isinstance(decision, workflows.NotAccepted):  # pragma: no cover - checked above
            raise InvalidTransition(
                event_type, self.phase, self.paused, client_events(decision.allowed_events)
            )
        fields = {**event_class.assigned_fields(self), **fields}  # the client's value wins
        if self.erased:  # personal data is no longer recorded for this relationship
            fields = transform_fields(event_class, fields, erase_text)
        self.trigger_event(
            event_class,
            **fields,
            **_envelope_fields(envelope),
            from_phase=decision.from_phase,
            to_phase=decision.to_phase,
        )
        return cast(Relationship.Event, self.pending_events[-1])

    def erase(self, data: Mapping[str, Any] | None, envelope: Envelope) -> "Relationship.Event":
        """Record ``personal_data.erased`` (``POST /v1/relationships/{id}/erasure``),
        in any phase, concluded included; raises :class:`ValidationFailed`.
        Making the earlier erasable fields unreadable (destroying the data key)
        is the service's part."""
        fields = self.PersonalDataErased.parse(data, path="")
        self.trigger_event(
            self.PersonalDataErased,
            **fields,
            **_envelope_fields(envelope),
            from_phase=self.phase,
            to_phase=self.phase,
        )
        return cast(Relationship.Event, self.pending_events[-1])

    # --- evolving the state (called by events only) ---------------------------------

    def _enter(self, phase: Phase, at: datetime) -> None:
        self.phase = phase
        self.phase_entered_at[phase] = at
        if phase == "establishment":
            self.establishment_round += 1
        if phase == "refinement":
            self.refinement_first_reflection = len(self.reflections)

    # --- events -------------------------------------------------------------------

    class Event(Aggregate.Event):
        """Base of the relationship's events: the envelope and the phase change.

        ``from_phase``/``to_phase`` are recorded with every event so that
        readers of the log (projections, webhooks) see phase changes without
        replaying the lifecycle, and replay never consults the rules.
        """

        api_type: ClassVar[str] = ""
        not_in_future: ClassVar[tuple[str, ...]] = ()
        """Date-time fields that cannot be later than the request's receipt."""
        recordable: ClassVar[bool] = True
        """Whether it can be posted as a lifecycle event (``Opened`` cannot)."""
        recorded_by_service: ClassVar[bool] = False
        """Recorded by the service itself (its risk worker), never posted by a client."""
        class_version: ClassVar[int] = 1
        """Bump (and add ``upcast_v1_v2``) when a type's stored shape changes."""

        actor: Actor | None
        occurred_at: datetime
        source: str | None
        correlation_id: str | None
        causation_id: str | None
        from_phase: Phase
        to_phase: Phase

        def apply(self, aggregate: Any) -> None:
            relationship = cast(Relationship, aggregate)
            self.evolve(relationship)
            phase_changed = self.changes_phase
            if not paused_after(relationship.paused, self.api_type, phase_changed):
                relationship.pause = None
            if phase_changed:
                relationship._enter(self.to_phase, self.occurred_at)

        def evolve(self, relationship: "Relationship") -> None:
            """How this event changes the relationship (besides its phase)."""

        @classmethod
        def parse(cls, data: Mapping[str, Any] | None, path: str = "data") -> dict[str, Any]:
            """Typed field values from raw JSON data, or :class:`ValidationFailed`."""
            raw = {} if data is None else data
            return validator_for(cls, ENVELOPE_FIELDS, cls.api_type).parse(raw, path)

        @classmethod
        def references(
            cls, relationship: "Relationship", fields: Mapping[str, Any]
        ) -> Iterator[FieldError]:
            """Checks of the data against the current state (none by default)."""
            return iter(())

        @classmethod
        def assigned_fields(cls, relationship: "Relationship") -> dict[str, Any]:
            """Fields the aggregate assigns rather than the client (none by default)."""
            return {}

        @property
        def envelope(self) -> Envelope:
            return Envelope(
                occurred_at=self.occurred_at,
                actor=self.actor,
                source=self.source,
                correlation_id=self.correlation_id,
                causation_id=self.causation_id,
            )

        @property
        def changes_phase(self) -> bool:
            return changes_phase(self.from_phase, self.to_phase)

        def concluded_outcome(self) -> str | None:
            """The outcome this event concludes the relationship with (None for
            an event that does not conclude it). The one place that says what
            a conclusion or a withdrawal means: the aggregate and the read
            models ask the event."""
            return None

        def data_fields(self) -> dict[str, Any]:
            """The event's data as typed values (not JSON-ready; see ``domain.event_data``)."""
            return {
                key: value
                for key, value in vars(self).items()
                if key not in ENVELOPE_FIELDS and value is not None
            }

    class Opened(Aggregate.Created, Event):
        """The relationship was opened; the mentee starts by reflecting."""

        api_type = "relationship.opened"
        recordable = False

        mentee_id: Id
        program_id: Id | None = None
        mentee_name: PersonalText | None = None
        predecessor_id: UUID | None = None

        def evolve(self, relationship: "Relationship") -> None:
            relationship.mentee_id = self.mentee_id
            relationship.program_id = self.program_id
            relationship.mentee_name = self.mentee_name
            relationship.predecessor_id = self.predecessor_id
            relationship.opened_at = self.occurred_at
            relationship._enter("reflection", self.occurred_at)

    class ReflectionRecorded(Event):
        """The mentee (or mentor) reflected: values, work style, development areas."""

        api_type = "reflection.recorded"

        author_role: PartyRole
        kind: ReflectionKind
        development_areas: list[PersonalLabel] | None = None
        values: PersonalText | None = None
        work_style: PersonalText | None = None
        notes: PersonalText | None = None

        def evolve(self, relationship: "Relationship") -> None:
            areas = list(self.development_areas or ())
            relationship.reflections.append(
                ReflectionNote(
                    self.kind, self.author_role, self.from_phase, self.occurred_at, areas
                )
            )
            if self.author_role == "mentee" and self.kind == "initial":
                relationship.mentee_initial_development_areas += len(areas)

    class IdentificationStarted(Event):
        """The mentee starts looking for mentors."""

        api_type = "identification.started"

    class CandidateProposed(Event):
        """A possible mentor was suggested (by the mentee, the program or matching)."""

        api_type = "candidate.proposed"

        mentor_id: Id
        proposed_by: ProposedBy | None = None
        match_score: Annotated[float, Between(0, 1)] | None = None
        rationale: PersonalText | None = None

        @classmethod
        def references(
            cls, relationship: "Relationship", fields: Mapping[str, Any]
        ) -> Iterator[FieldError]:
            mentor_id = fields["mentor_id"]
            if mentor_id == relationship.mentee_id:
                yield FieldError("data.mentor_id", "the mentee cannot be their own mentor")
            existing = relationship.candidates.get(mentor_id)
            if existing is not None and existing.status != "declined":
                yield FieldError("data.mentor_id", f"mentor {mentor_id!r} is already a candidate")

        def evolve(self, relationship: "Relationship") -> None:
            relationship.candidates[self.mentor_id] = Candidate(
                mentor_id=self.mentor_id,
                status="proposed",
                proposed_at=self.occurred_at,
                proposed_by=self.proposed_by,
                match_score=self.match_score,
            )

    class CandidateMet(Event):
        """The mentee met a candidate to see whether they fit."""

        api_type = "candidate.met"

        mentor_id: Id
        met_at: datetime
        notes: PersonalText | None = None

        @classmethod
        def references(
            cls, relationship: "Relationship", fields: Mapping[str, Any]
        ) -> Iterator[FieldError]:
            yield from _active_candidate(relationship, fields["mentor_id"])

        def evolve(self, relationship: "Relationship") -> None:
            candidate = relationship.candidates[self.mentor_id]
            candidate.status = "met"
            candidate.met_at = self.met_at

    class CandidateDeclined(Event):
        """The mentee or the candidate decided not to go further."""

        api_type = "candidate.declined"

        mentor_id: Id
        by: PartyRole
        reason_code: DeclineReason

        @classmethod
        def references(
            cls, relationship: "Relationship", fields: Mapping[str, Any]
        ) -> Iterator[FieldError]:
            yield from _active_candidate(relationship, fields["mentor_id"])

        def evolve(self, relationship: "Relationship") -> None:
            candidate = relationship.candidates[self.mentor_id]
            candidate.status = "declined"
            candidate.declined_by = self.by
            candidate.decline_reason = self.reason_code

    class MentorSelected(Event):
        """One candidate, who consented, becomes the mentor."""

        api_type = "mentor.selected"

        mentor_id: Id
        mentor_consent: bool

        def evolve(self, relationship: "Relationship") -> None:
            relationship.mentor_id = self.mentor_id

    class AgreementProposed(Event):
        """A version of the agreement: objectives, SMART goals, cadence, terms, dates."""

        api_type = "agreement.proposed"

        version: Annotated[int, Assigned()]
        objectives: Annotated[list[PersonalLabel], MinItems(1)]
        goals: Annotated[list[Goal], MinItems(1)]
        cadence: Cadence
        start_date: date
        end_date: date
        agenda_owner: AgendaOwner | None = None
        communication_channel: PersonalText | None = None
        feedback_plan: PersonalText | None = None
        confidentiality: PersonalText | None = None
        boundaries: PersonalText | None = None
        time_commitment: TimeCommitment | None = None
        deliverables: list[Deliverable] | None = None
        """Optional: events recorded before these fields existed load without them."""

        @classmethod
        def references(
            cls, relationship: "Relationship", fields: Mapping[str, Any]
        ) -> Iterator[FieldError]:
            yield from _unique_ids("goals", "goal", fields["goals"])
            yield from _unique_ids("deliverables", "deliverable", fields.get("deliverables") or ())

        @classmethod
        def assigned_fields(cls, relationship: "Relationship") -> dict[str, Any]:
            return {"version": len(relationship.agreements) + 1}

        def evolve(self, relationship: "Relationship") -> None:
            relationship.agreements.append(
                AgreementVersion(
                    version=self.version,
                    proposed_at=self.occurred_at,
                    establishment_round=relationship.establishment_round,
                    objectives=list(self.objectives),
                    goals=list(self.goals),
                    cadence=self.cadence,
                    start_date=self.start_date,
                    end_date=self.end_date,
                    agenda_owner=self.agenda_owner,
                    communication_channel=self.communication_channel,
                    feedback_plan=self.feedback_plan,
                    confidentiality=self.confidentiality,
                    boundaries=self.boundaries,
                    time_commitment=self.time_commitment,
                    deliverables=list(self.deliverables or ()),
                )
            )

    class AgreementSigned(Event):
        """The mentee or the mentor signed an agreement version."""

        api_type = "agreement.signed"

        by: PartyRole
        agreement_version: Annotated[int, Between(1, 1_000_000)]

        @classmethod
        def references(
            cls, relationship: "Relationship", fields: Mapping[str, Any]
        ) -> Iterator[FieldError]:
            path, number = "data.agreement_version", fields["agreement_version"]
            latest = relationship.agreement
            if latest is None:
                yield FieldError(path, "no agreement has been proposed yet")
            elif relationship.agreement_version(number) is None:
                yield FieldError(
                    path, f"no agreement version {number} (latest is {latest.version})"
                )
            elif number != latest.version:
                yield FieldError(
                    path, f"version {number} was superseded by version {latest.version}: sign that"
                )
            elif latest.establishment_round != relationship.establishment_round:
                yield FieldError(
                    path, f"version {number} predates the refinement: propose a new version"
                )
            elif fields["by"] in latest.signatures:
                yield FieldError("data.by", f"the {fields['by']} already signed version {number}")

        def evolve(self, relationship: "Relationship") -> None:
            agreement = relationship.agreement_version(self.agreement_version)
            if agreement is not None:
                agreement.signatures[self.by] = self.occurred_at

    class RelationshipEstablished(Event):
        """Both signed a complete agreement: the pair starts meeting."""

        api_type = "relationship.established"

    class MeetingScheduled(Event):
        """A meeting was planned, with its agenda."""

        api_type = "meeting.scheduled"

        meeting_id: Id
        scheduled_for: datetime
        agenda: list[PersonalLabel] | None = None

        @classmethod
        def references(
            cls, relationship: "Relationship", fields: Mapping[str, Any]
        ) -> Iterator[FieldError]:
            meeting_id = fields["meeting_id"]
            if meeting_id in relationship.meetings or meeting_id in relationship.past_meetings:
                status = relationship.past_meetings.get(meeting_id, "scheduled")
                yield FieldError(
                    "data.meeting_id", f"meeting {meeting_id!r} already exists ({status})"
                )

        def evolve(self, relationship: "Relationship") -> None:
            relationship.meetings[self.meeting_id] = Meeting(
                meeting_id=self.meeting_id,
                scheduled_for=self.scheduled_for,
                agenda=self.agenda,
            )

    class MeetingHeld(Event):
        """A meeting took place; it may leave action items."""

        api_type = "meeting.held"
        not_in_future = ("held_at",)

        held_at: datetime
        meeting_id: Id | None = None
        duration_minutes: Minutes | None = None
        agenda_set_by: PartyRole | None = None
        topics: list[PersonalLabel] | None = None
        action_items: list[ActionItem] | None = None
        notes: PersonalText | None = None

        @classmethod
        def references(
            cls, relationship: "Relationship", fields: Mapping[str, Any]
        ) -> Iterator[FieldError]:
            yield from _scheduled_meeting(relationship, fields.get("meeting_id"))
            yield from _new_action_items(relationship, fields.get("action_items") or ())

        def evolve(self, relationship: "Relationship") -> None:
            if self.meeting_id is not None:
                relationship.meetings.pop(self.meeting_id, None)
                relationship.past_meetings[self.meeting_id] = "held"
            relationship.meetings_held += 1
            last = relationship.last_meeting_at
            relationship.last_meeting_at = self.held_at if last is None else max(last, self.held_at)
            for item in self.action_items or ():
                relationship.open_items[item.id] = TrackedActionItem(
                    item=item, meeting_id=self.meeting_id, assigned_at=self.occurred_at
                )

    class MeetingMissed(Event):
        """A planned meeting did not take place."""

        api_type = "meeting.missed"

        scheduled_for: datetime
        meeting_id: Id | None = None
        reason_code: Id | None = None

        @classmethod
        def references(
            cls, relationship: "Relationship", fields: Mapping[str, Any]
        ) -> Iterator[FieldError]:
            yield from _scheduled_meeting(relationship, fields.get("meeting_id"))

        def evolve(self, relationship: "Relationship") -> None:
            if self.meeting_id is not None:
                relationship.meetings.pop(self.meeting_id, None)
                relationship.past_meetings[self.meeting_id] = "missed"
            relationship.meetings_missed += 1

    class ActionItemCompleted(Event):
        """An open action item was done."""

        api_type = "action_item.completed"

        action_item_id: Id

        @classmethod
        def references(
            cls, relationship: "Relationship", fields: Mapping[str, Any]
        ) -> Iterator[FieldError]:
            item_id = fields["action_item_id"]
            if item_id in relationship.closed_item_ids:
                yield FieldError(
                    "data.action_item_id", f"action item {item_id!r} is already completed"
                )
            elif item_id not in relationship.open_items:
                yield FieldError("data.action_item_id", f"no action item {item_id!r}")

        def evolve(self, relationship: "Relationship") -> None:
            relationship.open_items.pop(self.action_item_id, None)
            relationship.closed_item_ids.append(self.action_item_id)

    class GoalProgressed(Event):
        """A goal of the agreement moved on (or was dropped)."""

        api_type = "goal.progressed"

        goal_id: Id
        status: GoalStatus
        note: PersonalText | None = None

        @classmethod
        def references(
            cls, relationship: "Relationship", fields: Mapping[str, Any]
        ) -> Iterator[FieldError]:
            goal_id = fields["goal_id"]
            if all(goal.id != goal_id for goal in relationship.goals):
                known = ", ".join(repr(goal.id) for goal in relationship.goals) or "none"
                yield FieldError(
                    "data.goal_id", f"no goal {goal_id!r} in the agreement (goals: {known})"
                )

        def evolve(self, relationship: "Relationship") -> None:
            relationship.goal_progress[self.goal_id] = GoalProgress(
                status=self.status, updated_at=self.occurred_at, note=self.note
            )

    class FeedbackGiven(Event):
        """The mentee or the mentor rated how the relationship goes."""

        api_type = "feedback.given"

        from_role: PartyRole
        rating: Annotated[int, Between(1, 5)]
        comment: PersonalText | None = None

        def evolve(self, relationship: "Relationship") -> None:
            role = self.from_role
            relationship.feedback_count[role] = relationship.feedback_count.get(role, 0) + 1
            total = relationship.feedback_rating_total.get(role, 0)
            relationship.feedback_rating_total[role] = total + self.rating

    class ConcernRaised(Event):
        """Someone worries about the relationship (mismatch, boundaries, wellbeing...)."""

        api_type = "concern.raised"

        category: ConcernCategory
        severity: Severity
        concern_id: Id | None = None
        """Assigned (``concern-<n>``) when the client gives none."""
        detail: PersonalText | None = None

        @classmethod
        def references(
            cls, relationship: "Relationship", fields: Mapping[str, Any]
        ) -> Iterator[FieldError]:
            concern_id = fields.get("concern_id")
            if concern_id is not None and relationship.concern(concern_id) is not None:
                yield FieldError("data.concern_id", f"concern {concern_id!r} already exists")

        @classmethod
        def assigned_fields(cls, relationship: "Relationship") -> dict[str, Any]:
            number = len(relationship.concerns) + 1
            while relationship.concern(f"concern-{number}") is not None:
                number += 1
            return {"concern_id": f"concern-{number}"}

        def evolve(self, relationship: "Relationship") -> None:
            # Events recorded before concerns had ids get the id they would have been assigned.
            concern_id = self.concern_id or f"concern-{len(relationship.concerns) + 1}"
            relationship.concerns.append(
                ConcernNote(
                    self.category, self.severity, self.from_phase, self.occurred_at, concern_id
                )
            )

    class ConcernResolved(Event):
        """An open concern was dealt with (addressed, referred, withdrawn...)."""

        api_type = "concern.resolved"

        concern_id: Id
        resolution: Resolution
        note: PersonalText | None = None

        def evolve(self, relationship: "Relationship") -> None:
            concern = relationship.concern(self.concern_id)
            if concern is not None:
                concern.resolution = self.resolution

    class AdvocacyRecorded(Event):
        """The mentor spoke up for the mentee: an introduction, a nomination,
        co-authorship, an opportunity, protection (seed 002: sponsorship).
        Recorded by the mentor only (the ``recorded_by_the_mentor`` guard)."""

        api_type = "advocacy.recorded"

        kind: AdvocacyKind
        description: PersonalText | None = None
        occurred_on: date | None = None

        def evolve(self, relationship: "Relationship") -> None:
            relationship.advocacy_kinds = [*relationship.recorded_advocacy, self.kind]

    class RiskFlagged(Event):
        """The service found the relationship at risk: the reasons now true."""

        api_type = "risk.flagged"
        recorded_by_service = True

        reasons: Annotated[list[RiskReason], MinItems(1)]
        program_id: Annotated[Id | None, Assigned()] = None

        @classmethod
        def assigned_fields(cls, relationship: "Relationship") -> dict[str, Any]:
            return {"program_id": relationship.program_id}

    class RiskCleared(Event):
        """Reasons the service had flagged are no longer true."""

        api_type = "risk.cleared"
        recorded_by_service = True

        codes: Annotated[list[RiskCode], MinItems(1)]
        program_id: Annotated[Id | None, Assigned()] = None

        @classmethod
        def assigned_fields(cls, relationship: "Relationship") -> dict[str, Any]:
            return {"program_id": relationship.program_id}

    class RelationshipPaused(Event):
        """The pair stops for a while (leave, workload...)."""

        api_type = "relationship.paused"

        reason: RequiredPersonalText
        expected_resume: date | None = None

        def evolve(self, relationship: "Relationship") -> None:
            relationship.pause = Pause(self.reason, self.occurred_at, self.expected_resume)

    class RelationshipResumed(Event):
        """The pair carries on where it stopped."""

        api_type = "relationship.resumed"
        # The pause ends in ``Event.apply`` (``domain.metadata.paused_after``).

    class ReviewStarted(Event):
        """Time to look back: goals reached, circumstances changed, term ended..."""

        api_type = "review.started"

        trigger: ReviewTrigger

        def evolve(self, relationship: "Relationship") -> None:
            relationship.review_trigger = self.trigger

    class RelationshipRefined(Event):
        """The pair renegotiates: back to establishment for a new agreement version."""

        api_type = "relationship.refined"

        reason: PersonalText | None = None

    class RelationshipConcluded(Event):
        """The relationship ended as planned, with an outcome."""

        api_type = "relationship.concluded"

        outcome: Outcome
        summary: PersonalText | None = None

        def concluded_outcome(self) -> str:
            return self.outcome

        def evolve(self, relationship: "Relationship") -> None:
            relationship.outcome = self.concluded_outcome()
            relationship.outcome_summary = self.summary

    class RelationshipWithdrawn(Event):
        """The relationship was ended early (after cultivation began, only for safety)."""

        api_type = "relationship.withdrawn"

        reason_code: Id
        safety_override: bool | None = None
        justification: PersonalText | None = None

        def concluded_outcome(self) -> str:
            return "withdrawn"

        def evolve(self, relationship: "Relationship") -> None:
            relationship.outcome = self.concluded_outcome()
            relationship.outcome_summary = self.reason_code

    class PersonalDataErased(Event):
        """An administrator erased the relationship's personal data (crypto-shredding).

        Recorded by the erasure route only, in any phase. ``reason`` is not
        erasable: it is the lasting record of why, and must not describe a
        person (a ticket or request reference, a legal basis)."""

        api_type = "personal_data.erased"
        recordable = False
        recorded_by: ClassVar[str] = "POST /v1/relationships/{id}/erasure"

        reason: Annotated[str, NonBlank(), MaxLength(500)]
        """Short on purpose: a reference, not a narrative."""

        def evolve(self, relationship: "Relationship") -> None:
            relationship.erased = True


def client_events(event_types: Iterable[str]) -> list[str]:
    """The event types among these that clients may post."""
    return [
        t for t in event_types if t not in EVENT_CLASSES or not EVENT_CLASSES[t].recorded_by_service
    ]


EVENT_CLASSES: dict[str, type[Relationship.Event]] = {
    cls.api_type: cls
    for cls in (
        Relationship.Opened,
        Relationship.ReflectionRecorded,
        Relationship.IdentificationStarted,
        Relationship.CandidateProposed,
        Relationship.CandidateMet,
        Relationship.CandidateDeclined,
        Relationship.MentorSelected,
        Relationship.AgreementProposed,
        Relationship.AgreementSigned,
        Relationship.RelationshipEstablished,
        Relationship.MeetingScheduled,
        Relationship.MeetingHeld,
        Relationship.MeetingMissed,
        Relationship.ActionItemCompleted,
        Relationship.GoalProgressed,
        Relationship.FeedbackGiven,
        Relationship.ConcernRaised,
        Relationship.ConcernResolved,
        Relationship.AdvocacyRecorded,
        Relationship.RiskFlagged,
        Relationship.RiskCleared,
        Relationship.RelationshipPaused,
        Relationship.RelationshipResumed,
        Relationship.ReviewStarted,
        Relationship.RelationshipRefined,
        Relationship.RelationshipConcluded,
        Relationship.RelationshipWithdrawn,
        Relationship.PersonalDataErased,
    )
}
"""API type (``meeting.held``) -> event class; ``relationship.opened`` is the created event."""

RECORDABLE_TYPES: tuple[str, ...] = tuple(t for t, c in EVENT_CLASSES.items() if c.recordable)


# --- helpers of the commands above --------------------------------------------------


def _recordable_class(event_type: object) -> type[Relationship.Event]:
    event_class = EVENT_CLASSES.get(event_type) if isinstance(event_type, str) else None
    recorded_by = getattr(event_class, "recorded_by", None)
    if event_class is not None and not event_class.recordable and recorded_by:
        message = f"{event_type} cannot be posted as an event: it is recorded by {recorded_by}"
        raise ValidationFailed([FieldError("type", message)])
    if event_class is None or not event_class.recordable:
        raise ValidationFailed(
            [
                FieldError(
                    "type", "unknown event type; expected one of " + ", ".join(RECORDABLE_TYPES)
                )
            ]
        )
    return event_class


def _envelope_fields(envelope: Envelope) -> dict[str, Any]:
    return {
        "actor": envelope.actor,
        "occurred_at": envelope.occurred_at,
        "source": envelope.source,
        "correlation_id": envelope.correlation_id,
        "causation_id": envelope.causation_id,
    }


def _agreement_facts(relationship: Relationship, agreement: AgreementVersion) -> AgreementFacts:
    return AgreementFacts(
        version=agreement.version,
        signed_by=frozenset(agreement.signatures),
        measurable_dated_goals=sum(
            1 for goal in agreement.goals if goal.measure and goal.target_date is not None
        ),
        ends_after_start=agreement.end_date > agreement.start_date,
        proposed_in_current_establishment=(
            agreement.establishment_round == relationship.establishment_round
        ),
    )


def _never_proposed(mentor_id: str) -> str:
    return f"mentor {mentor_id!r} was never proposed as a candidate (candidate.proposed)"


def _active_candidate(relationship: Relationship, mentor_id: str) -> Iterator[FieldError]:
    candidate = relationship.candidates.get(mentor_id)
    if candidate is None:
        yield FieldError("data.mentor_id", _never_proposed(mentor_id))
    elif candidate.status == "declined":
        yield FieldError("data.mentor_id", f"candidate {mentor_id!r} has declined")


def _scheduled_meeting(relationship: Relationship, meeting_id: str | None) -> Iterator[FieldError]:
    if meeting_id is None:
        return
    if meeting_id in relationship.past_meetings:
        status = relationship.past_meetings[meeting_id]
        yield FieldError("data.meeting_id", f"meeting {meeting_id!r} was already {status}")
    # A meeting_id never scheduled here is an unscheduled meeting with that id:
    # calendar systems post meetings they scheduled elsewhere.


def _not_in_future(
    event_class: type[Relationship.Event], fields: Mapping[str, Any], now: datetime | None
) -> Iterator[FieldError]:
    if now is None:
        return
    for name in event_class.not_in_future:
        value = fields.get(name)
        if value is not None and value > now:
            moment = now.astimezone(UTC).isoformat(timespec="seconds")
            yield FieldError(f"data.{name}", f"must not be in the future (it is now {moment})")


def _new_action_items(
    relationship: Relationship, items: "list[ActionItem] | tuple[()]"
) -> Iterator[FieldError]:
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        path = f"data.action_items[{index}].id"
        if item.id in relationship.open_items or item.id in relationship.closed_item_ids:
            yield FieldError(path, f"action item {item.id!r} already exists")
        elif item.id in first_index:
            yield FieldError(
                path,
                f"duplicate action item id {item.id!r} "
                f"(also data.action_items[{first_index[item.id]}])",
            )
        first_index.setdefault(item.id, index)


def _unique_ids(field: str, noun: str, items: Sequence[Any]) -> Iterator[FieldError]:
    """An error per item whose ``id`` an earlier item of the list already has."""
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.id in first_index:
            yield FieldError(
                f"data.{field}[{index}].id",
                f"duplicate {noun} id {item.id!r} (also data.{field}[{first_index[item.id]}])",
            )
        first_index.setdefault(item.id, index)

"""Realistic sample histories: for ``mentorflow demo``, tests and benchmarks.

Every sample goes through :meth:`Relationship.record`, so it obeys the same
rules as the API; nothing here writes events directly.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from domain.relationship import Relationship
from domain.values import Actor, Envelope
from workflows import PHASES, Phase

START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


class Clock:
    """Hands out envelopes an hour apart, so histories have plausible times."""

    def __init__(self, start: datetime = START, step: timedelta = timedelta(hours=1)) -> None:
        self.now = start
        self.step = step

    def envelope(self, actor_id: str = "mentee-1", role: Any = "mentee") -> Envelope:
        self.now += self.step
        return Envelope(
            occurred_at=self.now,
            actor=Actor(actor_id, role),
            source="samples",
            correlation_id=None,
            causation_id=None,
        )


def agreement_data(goal_ids: tuple[str, ...] = ("g1", "g2")) -> dict[str, Any]:
    """A complete agreement proposal (it satisfies the establishment guard once signed)."""
    return {
        "objectives": ["publish a first-author paper", "prepare a K award application"],
        "goals": [
            {
                "id": goal_id,
                "statement": f"goal {goal_id}",
                "horizon": "short",
                "measure": "draft reviewed by mentor",
                "target_date": "2025-09-30",
            }
            for goal_id in goal_ids
        ],
        "cadence": {"frequency": "monthly", "duration_minutes": 60, "mode": "video"},
        "agenda_owner": "mentee",
        "communication_channel": "email between meetings",
        "feedback_plan": "quarterly written feedback",
        "confidentiality": "discussions stay between us",
        "start_date": "2025-02-01",
        "end_date": "2026-01-31",
    }


HELD_AT = "2025-02-10T15:00:00Z"

DATA_SAMPLES: dict[str, dict[str, Any]] = {
    "reflection.recorded": {
        "author_role": "mentee",
        "kind": "initial",
        "development_areas": ["grant writing"],
        "values": "candour",
        "work_style": "written first",
        "notes": "n",
    },
    "identification.started": {},
    "candidate.proposed": {
        "mentor_id": "m1",
        "proposed_by": "matching",
        "match_score": 0.9,
        "rationale": "r",
    },
    "candidate.met": {"mentor_id": "m1", "met_at": HELD_AT, "notes": "n"},
    "candidate.declined": {"mentor_id": "m1", "by": "mentor", "reason_code": "schedule"},
    "mentor.selected": {"mentor_id": "m1", "mentor_consent": True},
    "agreement.proposed": {
        **agreement_data(),
        "boundaries": "no weekend messages",
        "time_commitment": {"mentor_hours_per_month": 2, "mentee_hours_per_month": 6.5},
        "deliverables": [
            {
                "id": "d1",
                "description": "first-author paper on the pilot data",
                "kind": "manuscript",
                "authorship": "mentee first, mentor senior",
                "due_date": "2025-12-15",
            }
        ],
    },
    "agreement.signed": {"by": "mentee", "agreement_version": 1},
    "relationship.established": {},
    "meeting.scheduled": {"meeting_id": "m1", "scheduled_for": HELD_AT, "agenda": ["a"]},
    "meeting.held": {
        "held_at": HELD_AT,
        "meeting_id": "m1",
        "duration_minutes": 60,
        "agenda_set_by": "mentee",
        "topics": ["t"],
        "action_items": [
            {"id": "a1", "description": "d", "owner": "mentee", "due_date": "2025-03-01"}
        ],
        "notes": "n",
    },
    "meeting.missed": {"scheduled_for": HELD_AT, "meeting_id": "m1", "reason_code": "ill"},
    "action_item.completed": {"action_item_id": "a1"},
    "goal.progressed": {"goal_id": "g1", "status": "at_risk", "note": "n"},
    "feedback.given": {"from_role": "mentor", "rating": 5, "comment": "c"},
    "concern.raised": {
        "concern_id": "c1",
        "category": "wellbeing",
        "severity": "high",
        "detail": "d",
    },
    "concern.resolved": {"concern_id": "c1", "resolution": "addressed", "note": "n"},
    "advocacy.recorded": {
        "kind": "introduction",
        "description": "introduced to the study section chair",
        "occurred_on": "2025-03-03",
    },
    "risk.flagged": {
        "reasons": [
            {
                "code": "no_recent_meeting",
                "since": "2025-03-21T15:00:00Z",
                "detail": "no meeting since 2025-02-10; the monthly cadence wanted one by then",
            }
        ]
    },
    "risk.cleared": {"codes": ["no_recent_meeting"]},
    "relationship.paused": {"reason": "leave", "expected_resume": "2025-05-01"},
    "relationship.resumed": {},
    "review.started": {"trigger": "term_ended"},
    "relationship.refined": {"reason": "new goals"},
    "relationship.concluded": {"outcome": "goals_achieved", "summary": "s"},
    "relationship.withdrawn": {
        "reason_code": "safety",
        "safety_override": True,
        "justification": "j",
    },
}
"""A valid ``data`` per recordable event type: tests, and the OpenAPI examples."""


def _steps(mentor_id: str) -> Iterator[tuple[Phase, str, dict[str, Any] | None]]:
    """The event types that take a relationship through every phase, in order.

    Each step is ``(phase reached after it, event type, data)``.
    """
    yield (
        "reflection",
        "reflection.recorded",
        {
            "author_role": "mentee",
            "kind": "initial",
            "development_areas": ["grant writing", "networking"],
            "values": "autonomy, candour",
            "work_style": "written first, then discuss",
        },
    )
    yield "identification", "identification.started", None
    yield "identification", "candidate.proposed", {"mentor_id": mentor_id, "match_score": 0.9}
    yield (
        "identification",
        "candidate.met",
        {"mentor_id": mentor_id, "met_at": "2025-01-20T15:00:00Z"},
    )
    yield "establishment", "mentor.selected", {"mentor_id": mentor_id, "mentor_consent": True}
    yield "establishment", "agreement.proposed", agreement_data()
    yield "establishment", "agreement.signed", {"by": "mentee", "agreement_version": 1}
    yield "establishment", "agreement.signed", {"by": "mentor", "agreement_version": 1}
    yield "cultivation", "relationship.established", None
    yield (
        "cultivation",
        "meeting.held",
        {
            "held_at": "2025-02-10T15:00:00Z",
            "duration_minutes": 60,
            "agenda_set_by": "mentee",
            "topics": ["paper outline"],
            "action_items": [
                {"id": "a1", "description": "send outline", "owner": "mentee"},
            ],
            "notes": "good first meeting",
        },
    )
    yield "refinement", "review.started", {"trigger": "term_ended"}
    yield (
        "refinement",
        "reflection.recorded",
        {"author_role": "mentee", "kind": "closing", "notes": "learned a lot"},
    )
    yield "concluded", "relationship.concluded", {"outcome": "goals_achieved"}


def walk_to(
    phase: Phase,
    *,
    mentee_id: str = "mentee-1",
    mentor_id: str = "mentor-1",
    program_id: str | None = None,
    clock: Clock | None = None,
    id: UUID | None = None,
) -> Relationship:
    """A relationship opened and taken, event by event, to ``phase``."""
    clock = clock or Clock()
    opening = {"mentee_id": mentee_id} | ({"program_id": program_id} if program_id else {})
    relationship = Relationship.open(opening, clock.envelope(mentee_id), id=id)
    target = PHASES.index(phase)
    for reached, event_type, data in _steps(mentor_id):
        if PHASES.index(reached) > target:
            break
        relationship.record(event_type, data, clock.envelope(mentee_id))
    return relationship


def long_history(
    events: int = 1000, *, clock: Clock | None = None, id: UUID | None = None
) -> Relationship:
    """A relationship in cultivation with ``events`` events: meetings, action items,
    goal progress and feedback, as a long-running pair would accumulate."""
    clock = clock or Clock(step=timedelta(hours=6))
    return cultivate(walk_to("cultivation", clock=clock, id=id), events, clock)


def cultivate(relationship: Relationship, events: int, clock: Clock) -> Relationship:
    """Rounds of cultivation (a meeting scheduled and held, its action item done,
    goal progress, feedback) until the relationship has ``events`` events."""
    number = 0
    while relationship.version < events:
        number += 1
        for event_type, data in _cultivation_round(number, clock.now):
            if relationship.version >= events:
                break
            relationship.record(event_type, data, clock.envelope())
    return relationship


def _cultivation_round(number: int, now: datetime) -> list[tuple[str, dict[str, Any]]]:
    meeting = f"m{number}"
    item = f"a-{number}"
    return [
        ("meeting.scheduled", {"meeting_id": meeting, "scheduled_for": now.isoformat()}),
        (
            "meeting.held",
            {
                "meeting_id": meeting,
                "held_at": now.isoformat(),
                "duration_minutes": 45,
                "topics": ["progress", "next steps"],
                "action_items": [{"id": item, "description": "revise draft", "owner": "mentee"}],
                "notes": "steady progress on the draft",
            },
        ),
        ("action_item.completed", {"action_item_id": item}),
        ("goal.progressed", {"goal_id": "g1", "status": "on_track", "note": "draft 2 done"}),
        ("feedback.given", {"from_role": "mentee", "rating": 4, "comment": "helpful"}),
    ]

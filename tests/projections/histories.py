"""Histories generated for property tests, always through ``Relationship.record``.

A history is a list of steps ``(relationship index, choice, hours later)``.
Each step picks one of the event types the relationship accepts now and
builds plausible data for it from the relationship's state; a step the rules
refuse (an unmet guard) is skipped. So every generated history is one the API
could have recorded: phases, refinements, pauses, concerns, action items with
due dates, withdrawals, confidential notes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from hypothesis import strategies as st

from domain import Actor, DomainError, Envelope, Relationship

START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
Step = tuple[int, int, int]
Build = Callable[[Relationship, int, datetime], dict[str, Any] | None]


def steps(relationships: int = 4, max_steps: int = 120) -> st.SearchStrategy[list[Step]]:
    return st.lists(
        st.tuples(
            st.integers(0, relationships - 1), st.integers(0, 10_000), st.integers(1, 24 * 12)
        ),
        min_size=1,
        max_size=max_steps,
    )


@dataclass
class History:
    relationships: list[Relationship]
    order: list[Relationship.Event]
    """Every event, in the order it was recorded across relationships."""


def build(history_steps: list[Step], relationships: int = 4) -> History:
    now = START
    made = [
        Relationship.open(
            {"mentee_id": f"mentee-{i}", "program_id": f"program-{i % 2}"},
            Envelope(occurred_at=now, actor=Actor(f"mentee-{i}", "mentee"), source="tests"),
        )
        for i in range(relationships)
    ]
    order = [cast(Relationship.Event, r.pending_events[0]) for r in made]
    for index, choice, hours in history_steps:
        now += timedelta(hours=hours)
        relationship = made[index]
        event = _step(relationship, choice, now)
        if event is not None:
            order.append(event)
    return History(made, order)


_RARE = {"relationship.withdrawn": 11, "concern.raised": 3, "relationship.paused": 2}
"""Event types kept only for one choice in N among the random steps."""


def _forward(r: Relationship, k: int) -> tuple[str, dict[str, Any] | None] | None:
    """The event that moves the relationship on (None: let a random one come)."""
    if r.paused:
        return "relationship.resumed", None
    if r.phase == "reflection":
        if r.mentee_initial_development_areas == 0:
            return "reflection.recorded", {
                "author_role": "mentee",
                "kind": "initial",
                "development_areas": ["writing"],
                "work_style": f"secret style {k}",
            }
        return "identification.started", None
    if r.phase == "identification":
        if not _candidates(r, "proposed") + _candidates(r, "met"):
            return "candidate.proposed", {"mentor_id": f"mentor-{k % 4}"}
        if not _candidates(r, "met"):
            return "candidate.met", {
                "mentor_id": _candidates(r, "proposed")[0],
                "met_at": "2025-01-01T00:00:00Z",
            }
        return "mentor.selected", {"mentor_id": _candidates(r, "met")[0], "mentor_consent": True}
    if r.phase == "establishment":
        latest = r.agreement
        if latest is None or latest.establishment_round != r.establishment_round:
            return "agreement.proposed", None
        if len(latest.signatures) < 2:
            return "agreement.signed", None
        return "relationship.established", None
    if r.phase == "cultivation":
        return ("meeting.held", None) if k % 5 else ("review.started", None)
    if r.phase == "refinement":
        if not any(
            n.author_role == "mentee" and n.kind == "closing" for n in r.refinement_reflections
        ):
            return "reflection.recorded", {"author_role": "mentee", "kind": "closing"}
        return ("relationship.refined", None) if k % 3 == 0 else ("relationship.concluded", None)
    return None


def _random(relationship: Relationship, choice: int) -> str | None:
    offered = [
        t for t in relationship.allowed_events() if t in _BUILDERS and choice % _RARE.get(t, 1) == 0
    ]
    return offered[(choice // 11) % len(offered)] if offered else None


def _step(relationship: Relationship, choice: int, now: datetime) -> Relationship.Event | None:
    picked = _forward(relationship, choice) if choice % 10 < 6 else None
    if picked is None:
        event_type = _random(relationship, choice)
        if event_type is None:
            return None
        picked = event_type, None
    event_type, data = picked
    if data is None:
        data = _BUILDERS[event_type](relationship, choice, now)
    role: Any = "mentor" if choice % 3 == 0 else "mentee"
    envelope = Envelope(
        occurred_at=now,
        actor=Actor(f"{role}-{choice % 5}", role),
        source=f"system-{choice % 2}",
        correlation_id=f"c-{choice}",
    )
    try:
        return relationship.record(event_type, data, envelope)
    except DomainError:
        return None


def _pick(items: list[Any], choice: int) -> Any:
    return items[choice % len(items)] if items else None


def _reflection(r: Relationship, k: int, now: datetime) -> dict[str, Any]:
    return {
        "author_role": "mentee" if k % 4 else "mentor",
        "kind": ("initial", "interim", "closing")[k % 3 if r.phase != "refinement" else 2],
        "development_areas": [f"area-{k % 5}"],
        "values": f"secret values {k}",
        "notes": f"secret notes {k}",
    }


def _agreement(r: Relationship, k: int, now: datetime) -> dict[str, Any]:
    start = now.date()
    return {
        "objectives": ["publish"],
        "goals": [
            {"id": f"g{n}", "statement": f"goal {n}", "measure": "m", "target_date": "2027-01-01"}
            for n in range(1 + k % 2)
        ],
        "cadence": {"frequency": ("weekly", "biweekly", "monthly", "quarterly")[k % 4]},
        "start_date": start.isoformat(),
        "end_date": (start + timedelta(days=365)).isoformat(),
    }


def _signature(r: Relationship, k: int, now: datetime) -> dict[str, Any] | None:
    latest = r.agreement
    if latest is None:
        return None
    unsigned = [p for p in ("mentee", "mentor") if p not in latest.signatures]
    return {"by": _pick(unsigned, k) or "mentee", "agreement_version": latest.version}


def _meeting_held(r: Relationship, k: int, now: datetime) -> dict[str, Any]:
    data: dict[str, Any] = {
        "held_at": now.isoformat(),
        "duration_minutes": 30 + k % 60,
        "topics": ["progress"],
        "notes": f"secret meeting notes {k}",
    }
    scheduled = _pick(sorted(r.meetings), k)
    if scheduled is not None and k % 2:
        data["meeting_id"] = scheduled
    if k % 3:
        due = now.date() + timedelta(days=k % 40 - 10)
        data["action_items"] = [
            {"id": f"a{r.version}", "description": "do it", "owner": "mentee", "due_date": str(due)}
        ]
    return data


def _candidates(r: Relationship, status: str) -> list[str]:
    return sorted(c.mentor_id for c in r.candidates.values() if c.status == status)


_BUILDERS: dict[str, Build] = {
    "reflection.recorded": _reflection,
    "identification.started": lambda r, k, now: None,
    "candidate.proposed": lambda r, k, now: {"mentor_id": f"mentor-{k % 4}", "match_score": 0.5},
    "candidate.met": lambda r, k, now: {
        "mentor_id": _pick(_candidates(r, "proposed"), k) or "mentor-0",
        "met_at": now.isoformat(),
        "notes": f"secret first impression {k}",
    },
    "candidate.declined": lambda r, k, now: {
        "mentor_id": _pick(_candidates(r, "proposed") + _candidates(r, "met"), k) or "mentor-0",
        "by": "mentor",
        "reason_code": "schedule",
    },
    "mentor.selected": lambda r, k, now: {
        "mentor_id": _pick(_candidates(r, "met"), k) or "mentor-0",
        "mentor_consent": True,
    },
    "agreement.proposed": _agreement,
    "agreement.signed": _signature,
    "relationship.established": lambda r, k, now: None,
    "meeting.scheduled": lambda r, k, now: {
        "meeting_id": f"m{r.version}",
        "scheduled_for": (now + timedelta(days=3)).isoformat(),
    },
    "meeting.held": _meeting_held,
    "meeting.missed": lambda r, k, now: {"scheduled_for": now.isoformat(), "reason_code": "ill"},
    "action_item.completed": lambda r, k, now: {
        "action_item_id": _pick(sorted(r.open_items), k) or "none"
    },
    "goal.progressed": lambda r, k, now: {
        "goal_id": _pick([g.id for g in r.goals], k) or "none",
        "status": ("on_track", "at_risk", "achieved", "dropped")[k % 4],
    },
    "feedback.given": lambda r, k, now: {
        "from_role": "mentor" if k % 2 else "mentee",
        "rating": 1 + k % 5,
        "comment": f"secret comment {k}",
    },
    "concern.raised": lambda r, k, now: {
        "category": "other",
        "severity": ("low", "medium", "high")[k % 3],
        "detail": f"secret detail {k}",
    },
    "relationship.paused": lambda r, k, now: {"reason": "leave"},
    "relationship.resumed": lambda r, k, now: None,
    "review.started": lambda r, k, now: {"trigger": "scheduled_review"},
    "relationship.refined": lambda r, k, now: {"reason": "renegotiate"},
    "relationship.concluded": lambda r, k, now: {
        "outcome": ("goals_achieved", "partially_achieved", "mismatch", "other")[k % 4]
    },
    "relationship.withdrawn": lambda r, k, now: {
        "reason_code": "moved",
        "safety_override": True,
        "justification": "safety",
    },
}

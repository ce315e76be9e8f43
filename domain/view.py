"""The relationship as ``GET /v1/relationships/{id}`` shows it (JSON-ready).

The state holds no confidential fields, so the same view serves every role.
"""

from typing import Any

from domain.jsonable import to_jsonable
from domain.relationship import Relationship
from domain.state import AgreementVersion, TrackedActionItem


def relationship_view(relationship: Relationship) -> dict[str, Any]:
    """Everything a client needs about one relationship, with ``allowed_events``."""
    r = relationship
    return {
        "id": str(r.id),
        "version": r.version,
        "phase": r.phase,
        "paused": r.paused,
        "pause": _pause(r),
        "allowed_events": r.allowed_events(),
        "mentee_id": r.mentee_id,
        "mentee_name": r.mentee_name,
        "mentor_id": r.mentor_id,
        "program_id": r.program_id,
        "predecessor_id": to_jsonable(r.predecessor_id),
        "opened_at": to_jsonable(r.opened_at),
        "modified_at": to_jsonable(r.modified_on),
        "phase_entered_at": to_jsonable(r.phase_entered_at),
        "current_phase_entered_at": to_jsonable(r.phase_entered_at.get(r.phase)),
        "agreement": None if r.agreement is None else _agreement(r.agreement),
        "agreement_versions": [_agreement(a) for a in r.agreements],
        "goals": _goals(r),
        "open_action_items": [_action_item(item) for item in r.open_action_items],
        "completed_action_items": len(r.closed_item_ids),
        "meetings_held": r.meetings_held,
        "meetings": _meetings(r),
        "candidates": [to_jsonable(c) for c in r.candidates.values()],
        "reflections": _reflections(r),
        "feedback": _feedback(r),
        "concerns": _concerns(r),
        "advocacy": {"count": len(r.recorded_advocacy), "by_kind": r.advocacy},
        "review_trigger": r.review_trigger,
        "outcome": r.outcome,
        "outcome_summary": r.outcome_summary,
    }


def _as_object(value: object) -> dict[str, Any]:
    body = to_jsonable(value)
    assert isinstance(body, dict)
    return body


def _pause(r: Relationship) -> dict[str, Any] | None:
    return None if r.pause is None else _as_object(r.pause)


def _agreement(agreement: AgreementVersion) -> dict[str, Any]:
    body: dict[str, Any] = _as_object(agreement)
    body.pop("establishment_round", None)
    # always shown (null, []) so a client can tell "none agreed" at a glance
    body["time_commitment"] = to_jsonable(agreement.time_commitment)
    body["deliverables"] = to_jsonable(agreement.deliverables)
    body["signed_by"] = sorted(agreement.signatures)
    body["fully_signed"] = {"mentee", "mentor"} <= set(agreement.signatures)
    return body


def _goals(r: Relationship) -> list[dict[str, Any]]:
    goals = []
    for goal in r.goals:
        body: dict[str, Any] = _as_object(goal)
        progress = r.goal_progress.get(goal.id)
        body["status"] = progress.status if progress else "not_started"
        body["status_note"] = progress.note if progress else None
        body["status_updated_at"] = to_jsonable(progress.updated_at) if progress else None
        goals.append(body)
    return goals


def _action_item(item: TrackedActionItem) -> dict[str, Any]:
    body: dict[str, Any] = _as_object(item.item)
    body["meeting_id"] = item.meeting_id
    body["assigned_at"] = to_jsonable(item.assigned_at)
    return body


def _meetings(r: Relationship) -> dict[str, Any]:
    return {
        "held": r.meetings_held,
        "missed": r.meetings_missed,
        "scheduled": [to_jsonable(m) for m in r.meetings.values()],
        "last_held_at": to_jsonable(r.last_meeting_at),
    }


def _reflections(r: Relationship) -> dict[str, Any]:
    return {
        "count": len(r.reflections),
        "mentee_initial_development_areas": sorted(
            {
                area
                for note in r.reflections
                if note.author_role == "mentee" and note.kind == "initial"
                for area in note.development_areas
            }
        ),
        "items": [to_jsonable(note) for note in r.reflections],
        "this_refinement": [to_jsonable(note) for note in r.refinement_reflections],
    }


def _feedback(r: Relationship) -> dict[str, Any]:
    by_role: dict[str, Any] = {}
    for role in ("mentee", "mentor"):
        count = r.feedback_count.get(role, 0)
        total = r.feedback_rating_total.get(role, 0)
        by_role[role] = {
            "count": count,
            "average_rating": round(total / count, 2) if count else None,
        }
    return {"count": sum(r.feedback_count.values()), "by_role": by_role}


def _concerns(r: Relationship) -> dict[str, Any]:
    return {
        "count": len(r.concerns),
        "high_severity": sum(1 for c in r.concerns if c.severity == "high"),
        "open": len(r.open_concerns),
        "items": [to_jsonable(c) for c in r.concerns],
    }

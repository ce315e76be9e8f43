"""A mentoring relationship's whole life as HTTP request bodies, in order."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Api

MENTEE = {"id": "mentee-1", "role": "mentee"}
MENTOR = {"id": "mentor-7", "role": "mentor"}

AGREEMENT = {
    "objectives": ["publish a first-author paper"],
    "goals": [
        {
            "id": "g1",
            "statement": "submit the paper",
            "horizon": "short",
            "measure": "manuscript submitted",
            "target_date": "2026-09-30",
        }
    ],
    "cadence": {"frequency": "monthly", "duration_minutes": 60, "mode": "video"},
    "confidentiality": "discussions stay between us",
    "start_date": "2026-02-01",
    "end_date": "2027-01-31",
}

TO_CULTIVATION: list[tuple[str, dict[str, Any] | None, dict[str, str]]] = [
    (
        "reflection.recorded",
        {
            "author_role": "mentee",
            "kind": "initial",
            "development_areas": ["grant writing"],
            "values": "candour",
            "notes": "private thoughts about my career",
        },
        MENTEE,
    ),
    ("identification.started", None, MENTEE),
    ("candidate.proposed", {"mentor_id": "mentor-7", "proposed_by": "mentee"}, MENTEE),
    ("candidate.met", {"mentor_id": "mentor-7", "met_at": "2026-01-20T15:00:00Z"}, MENTEE),
    ("mentor.selected", {"mentor_id": "mentor-7", "mentor_consent": True}, MENTEE),
    ("agreement.proposed", AGREEMENT, MENTEE),
    ("agreement.signed", {"by": "mentee", "agreement_version": 1}, MENTEE),
    ("agreement.signed", {"by": "mentor", "agreement_version": 1}, MENTOR),
    ("relationship.established", None, MENTEE),
]

TO_CONCLUDED: list[tuple[str, dict[str, Any] | None, dict[str, str]]] = [
    (
        "meeting.held",
        {
            "held_at": "2026-02-10T15:00:00Z",
            "action_items": [{"id": "a1", "description": "send outline", "owner": "mentee"}],
            "notes": "confidential meeting notes",
        },
        MENTEE,
    ),
    ("action_item.completed", {"action_item_id": "a1"}, MENTEE),
    ("goal.progressed", {"goal_id": "g1", "status": "achieved"}, MENTOR),
    ("feedback.given", {"from_role": "mentor", "rating": 5, "comment": "a delight"}, MENTOR),
    ("review.started", {"trigger": "goals_achieved"}, MENTEE),
    ("reflection.recorded", {"author_role": "mentee", "kind": "closing"}, MENTEE),
    ("relationship.concluded", {"outcome": "goals_achieved", "summary": "paper out"}, MENTEE),
]


async def open_relationship(api: Api, **fields: Any) -> dict[str, Any]:
    status, body, _ = await api.post("/v1/relationships", {"mentee_id": "mentee-1", **fields})
    assert status == 201, body
    return dict(body)


async def post(
    api: Api, relationship_id: str, event_type: str, data: dict[str, Any] | None, actor: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": event_type, "actor": actor}
    if data is not None:
        body["data"] = data
    status, response, _ = await api.post(f"/v1/relationships/{relationship_id}/events", body)
    assert status == 201, (event_type, response)
    return dict(response)


async def walk(api: Api, relationship_id: str, steps: list[Any]) -> list[dict[str, Any]]:
    return [await post(api, relationship_id, t, d, a) for t, d, a in steps]


async def in_cultivation(api: Api) -> str:
    relationship_id = str((await open_relationship(api))["id"])
    await walk(api, relationship_id, TO_CULTIVATION)
    return relationship_id

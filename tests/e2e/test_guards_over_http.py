"""Every guard that `GET /v1/workflow` advertises can fail, over HTTP.

A guard that validation always pre-empts would be advertised yet never fire;
this drives each advertised guard to failure through the real server, and
refuses a new guard that has no scenario here.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Api
from tests.e2e.journey import AGREEMENT, MENTEE, MENTOR, TO_CULTIVATION, open_relationship, walk

Step = tuple[str, dict[str, Any] | None, dict[str, str]]

IDENTIFYING = TO_CULTIVATION[:2]
PROPOSED = TO_CULTIVATION[:3]
MET = TO_CULTIVATION[:4]
SELECTED = TO_CULTIVATION[:5]
DECLINED: list[Step] = [
    *MET,
    (
        "candidate.declined",
        {"mentor_id": "mentor-7", "by": "mentor", "reason_code": "schedule"},
        MENTOR,
    ),
]
IN_REVIEW: list[Step] = [
    *TO_CULTIVATION,
    ("review.started", {"trigger": "scheduled_review"}, MENTEE),
]
REFINED_WITHOUT_NEW_AGREEMENT: list[Step] = [
    *IN_REVIEW,
    ("reflection.recorded", {"author_role": "mentee", "kind": "interim"}, MENTEE),
    ("relationship.refined", {"reason": "new lab"}, MENTEE),
]
SELECT = ("mentor.selected", {"mentor_id": "mentor-7", "mentor_consent": True}, MENTEE)
ESTABLISH: Step = ("relationship.established", None, MENTEE)
UNDATED_GOAL = {**AGREEMENT, "goals": [{"id": "g1", "statement": "write", "measure": "done"}]}
BACKWARDS = {**AGREEMENT, "start_date": "2027-01-31", "end_date": "2026-02-01"}


def _signed(agreement: dict[str, Any], *by: str) -> list[Step]:
    return [
        *SELECTED,
        ("agreement.proposed", agreement, MENTEE),
        *[("agreement.signed", {"by": who, "agreement_version": 1}, MENTEE) for who in by],
    ]


def _withdraw(override: bool, justification: str) -> Step:
    data = {"reason_code": "left", "safety_override": override, "justification": justification}
    return ("relationship.withdrawn", data, MENTEE)


# guard name -> (steps that set it up, the event it refuses, the expected problem status)
SCENARIOS: dict[str, tuple[list[Step], Step, int]] = {
    "mentee_listed_initial_development_areas": ([], ("identification.started", None, MENTEE), 422),
    "mentor_was_proposed": (
        IDENTIFYING,
        ("mentor.selected", {"mentor_id": "stranger", "mentor_consent": True}, MENTEE),
        422,
    ),
    "mentor_was_met": (PROPOSED, SELECT, 422),
    "mentor_has_not_declined": (DECLINED, SELECT, 422),
    "mentor_consented": (
        MET,
        ("mentor.selected", {"mentor_id": "mentor-7", "mentor_consent": False}, MENTEE),
        422,
    ),
    "agreement_proposed_in_this_establishment": (REFINED_WITHOUT_NEW_AGREEMENT, ESTABLISH, 422),
    "agreement_signed_by_mentee": (_signed(AGREEMENT, "mentor"), ESTABLISH, 422),
    "agreement_signed_by_mentor": (_signed(AGREEMENT, "mentee"), ESTABLISH, 422),
    "agreement_has_measurable_dated_goal": (
        _signed(UNDATED_GOAL, "mentee", "mentor"),
        ESTABLISH,
        422,
    ),
    "agreement_ends_after_it_starts": (_signed(BACKWARDS, "mentee", "mentor"), ESTABLISH, 422),
    "reflected_in_this_refinement": (
        IN_REVIEW,
        ("relationship.refined", {"reason": "again"}, MENTEE),
        422,
    ),
    "mentee_closing_reflection_in_this_refinement": (
        [*IN_REVIEW, ("reflection.recorded", {"author_role": "mentor", "kind": "closing"}, MENTOR)],
        ("relationship.concluded", {"outcome": "goals_achieved"}, MENTEE),
        422,
    ),
    "safety_override_is_set": (TO_CULTIVATION, _withdraw(False, "harassment"), 422),
    "justification_is_given": (TO_CULTIVATION, _withdraw(True, "   "), 422),
    "is_not_paused": (
        [
            *_signed(AGREEMENT, "mentee", "mentor"),
            ("relationship.paused", {"reason": "leave"}, MENTEE),
        ],
        ESTABLISH,
        409,
    ),
    "is_paused": (TO_CULTIVATION, ("relationship.resumed", None, MENTEE), 409),
    "concern_was_raised": (
        [("concern.raised", {"category": "other", "severity": "low"}, MENTEE)],
        ("concern.resolved", {"concern_id": "concern-9", "resolution": "addressed"}, MENTEE),
        422,
    ),
    "concern_is_still_open": (
        [
            ("concern.raised", {"category": "other", "severity": "low"}, MENTEE),
            ("concern.resolved", {"concern_id": "concern-1", "resolution": "addressed"}, MENTEE),
        ],
        ("concern.resolved", {"concern_id": "concern-1", "resolution": "withdrawn"}, MENTEE),
        422,
    ),
    "recorded_by_the_mentor": (
        TO_CULTIVATION,
        ("advocacy.recorded", {"kind": "nomination", "description": "for a prize"}, MENTEE),
        422,
    ),
}


def _advertised(workflow: dict[str, Any]) -> set[str]:
    transitions = [*workflow["transitions"], *workflow["in_phase_guards"]]
    return {guard["name"] for transition in transitions for guard in transition["guards"]}


async def test_every_advertised_guard_has_a_scenario(api: Api) -> None:
    status, workflow, _ = await api.get("/v1/workflow")
    assert status == 200
    assert _advertised(workflow) == set(SCENARIOS)


@pytest.mark.parametrize("guard", sorted(SCENARIOS))
async def test_each_advertised_guard_fails_over_http(api: Api, guard: str) -> None:
    steps, refused, expected = SCENARIOS[guard]
    relationship_id = str((await open_relationship(api))["id"])
    await walk(api, relationship_id, steps)
    event_type, data, actor = refused
    body: dict[str, Any] = {"type": event_type, "actor": actor}
    if data is not None:
        body["data"] = data
    path = f"/v1/relationships/{relationship_id}/events"
    status, problem, _ = await api.post(path, body)
    assert status == expected, problem
    if expected == 422:
        assert problem["type"].endswith("/guard-failed")
        assert guard in problem["unmet_guards"]
    else:
        assert problem["type"].endswith("/invalid-transition")
    _, history, _ = await api.get(path + "?limit=500")
    assert len(history["items"]) == len(steps) + 1  # the opening event and the steps only

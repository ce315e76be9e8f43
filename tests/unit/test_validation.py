"""Every validation rule, broken on purpose, is reported at its precise path."""

from datetime import UTC, datetime
from typing import Any

import pytest

from domain import Envelope, Relationship, ValidationFailed, parse_envelope
from domain.samples import agreement_data, walk_to
from workflows import Phase

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ENVELOPE = Envelope(occurred_at=NOW)


def _agreement(**changes: Any) -> dict[str, Any]:
    data = agreement_data()
    data.update(changes)
    return data


def _goal(**changes: Any) -> dict[str, Any]:
    goal = {"id": "g1", "statement": "publish", "measure": "accepted", "target_date": "2025-09-30"}
    goal.update(changes)
    return goal


REFLECTION = {"author_role": "mentee", "kind": "initial"}
HELD = {"held_at": "2025-02-10T15:00:00Z"}

# (phase the relationship is in, event type, data, path, part of the message)
CASES: list[tuple[Phase, str, Any, str, str]] = [
    # shapes and presence
    ("reflection", "reflection.recorded", [1, 2], "data", "must be an object"),
    ("reflection", "reflection.recorded", {}, "data.author_role", "is required"),
    ("reflection", "reflection.recorded", {"author_role": "mentee"}, "data.kind", "is required"),
    ("reflection", "reflection.recorded", {**REFLECTION, "kind": None}, "data.kind", "is required"),
    (
        "reflection",
        "reflection.recorded",
        {**REFLECTION, "mood": "x"},
        "data.mood",
        "is not a field",
    ),
    # vocabularies
    (
        "reflection",
        "reflection.recorded",
        {**REFLECTION, "kind": "final"},
        "data.kind",
        "must be one of: initial, interim, closing",
    ),
    (
        "reflection",
        "reflection.recorded",
        {**REFLECTION, "author_role": "coach"},
        "data.author_role",
        "must be one of: mentee, mentor",
    ),
    # lists and their items
    (
        "reflection",
        "reflection.recorded",
        {**REFLECTION, "development_areas": "grants"},
        "data.development_areas",
        "must be a list",
    ),
    (
        "reflection",
        "reflection.recorded",
        {**REFLECTION, "development_areas": ["ok", 3]},
        "data.development_areas[1]",
        "must be a string",
    ),
    (
        "reflection",
        "reflection.recorded",
        {**REFLECTION, "development_areas": [" "]},
        "data.development_areas[0]",
        "must not be empty",
    ),
    (
        "reflection",
        "reflection.recorded",
        {**REFLECTION, "notes": 42},
        "data.notes",
        "must be a string",
    ),
    # numbers and ranges
    (
        "identification",
        "candidate.proposed",
        {"mentor_id": "m", "match_score": 1.5},
        "data.match_score",
        "must be between 0 and 1",
    ),
    (
        "identification",
        "candidate.proposed",
        {"mentor_id": "m", "match_score": -0.1},
        "data.match_score",
        "must be between 0 and 1",
    ),
    (
        "identification",
        "candidate.proposed",
        {"mentor_id": "m", "match_score": "0.5"},
        "data.match_score",
        "must be a number",
    ),
    (
        "identification",
        "candidate.proposed",
        {"mentor_id": "m", "match_score": True},
        "data.match_score",
        "must be a number",
    ),
    (
        "identification",
        "candidate.proposed",
        {"mentor_id": ""},
        "data.mentor_id",
        "must not be empty",
    ),
    (
        "identification",
        "candidate.proposed",
        {"mentor_id": "x" * 201},
        "data.mentor_id",
        "at most 200 characters",
    ),
    (
        "identification",
        "candidate.proposed",
        {"mentor_id": "m", "proposed_by": "hr"},
        "data.proposed_by",
        "must be one of: mentee, program, matching",
    ),
    # date-times
    (
        "identification",
        "candidate.met",
        {"mentor_id": "m", "met_at": "yesterday"},
        "data.met_at",
        "ISO 8601 date-time",
    ),
    (
        "identification",
        "candidate.met",
        {"mentor_id": "m", "met_at": "2025-01-01T10:00:00"},
        "data.met_at",
        "timezone offset",
    ),
    (
        "identification",
        "candidate.met",
        {"mentor_id": "m", "met_at": 1735725600},
        "data.met_at",
        "ISO 8601 date-time",
    ),
    # cross-references: candidates
    (
        "identification",
        "candidate.met",
        {"mentor_id": "stranger", "met_at": "2025-01-01T10:00:00Z"},
        "data.mentor_id",
        "was never proposed",
    ),
    (
        "identification",
        "candidate.declined",
        {"mentor_id": "stranger", "by": "mentor", "reason_code": "schedule"},
        "data.mentor_id",
        "was never proposed",
    ),
    (
        "identification",
        "candidate.declined",
        {"mentor_id": "mentor-1", "by": "mentor", "reason_code": "bored"},
        "data.reason_code",
        "must be one of: no_capacity, expertise_mismatch, schedule, other",
    ),
    (
        "identification",
        "candidate.proposed",
        {"mentor_id": "mentor-1"},
        "data.mentor_id",
        "already a candidate",
    ),
    (
        "identification",
        "candidate.proposed",
        {"mentor_id": "mentee-1"},
        "data.mentor_id",
        "cannot be their own mentor",
    ),
    (
        "identification",
        "mentor.selected",
        {"mentor_id": "mentor-1", "mentor_consent": "yes"},
        "data.mentor_consent",
        "must be true or false",
    ),
    (
        "identification",
        "mentor.selected",
        {"mentor_id": "mentor-1"},
        "data.mentor_consent",
        "is required",
    ),
    # agreements
    (
        "establishment",
        "agreement.proposed",
        _agreement(version=3),
        "data.version",
        "is assigned by the service",
    ),
    (
        "establishment",
        "agreement.proposed",
        _agreement(objectives=[]),
        "data.objectives",
        "at least 1 item",
    ),
    ("establishment", "agreement.proposed", _agreement(goals=[]), "data.goals", "at least 1 item"),
    (
        "establishment",
        "agreement.proposed",
        _agreement(goals=[_goal(target_date="2025-13-01")]),
        "data.goals[0].target_date",
        "ISO 8601 date",
    ),
    (
        "establishment",
        "agreement.proposed",
        _agreement(goals=[_goal(), _goal(statement=None)]),
        "data.goals[1].statement",
        "is required",
    ),
    (
        "establishment",
        "agreement.proposed",
        _agreement(goals=[_goal(), _goal(horizon="mid")]),
        "data.goals[1].horizon",
        "must be one of: short, long",
    ),
    (
        "establishment",
        "agreement.proposed",
        _agreement(goals=[_goal(), _goal(smart=True)]),
        "data.goals[1].smart",
        "is not a field",
    ),
    (
        "establishment",
        "agreement.proposed",
        _agreement(goals=[_goal(), _goal()]),
        "data.goals[1].id",
        "duplicate goal id 'g1' (also data.goals[0])",
    ),
    (
        "establishment",
        "agreement.proposed",
        _agreement(goals=["publish"]),
        "data.goals[0]",
        "must be an object",
    ),
    (
        "establishment",
        "agreement.proposed",
        _agreement(cadence=None),
        "data.cadence",
        "is required",
    ),
    (
        "establishment",
        "agreement.proposed",
        _agreement(cadence={"frequency": "daily"}),
        "data.cadence.frequency",
        "must be one of: weekly, biweekly, monthly, quarterly",
    ),
    (
        "establishment",
        "agreement.proposed",
        _agreement(cadence={"frequency": "weekly", "duration_minutes": 0}),
        "data.cadence.duration_minutes",
        "must be between 1 and 1440",
    ),
    (
        "establishment",
        "agreement.proposed",
        _agreement(start_date="2025-02-01T00:00:00Z"),
        "data.start_date",
        "ISO 8601 date",
    ),
    (
        "establishment",
        "agreement.signed",
        {"by": "mentee", "agreement_version": 1},
        "data.agreement_version",
        "no agreement has been proposed yet",
    ),
    (
        "establishment",
        "agreement.signed",
        {"by": "mentee", "agreement_version": 0},
        "data.agreement_version",
        "must be between 1 and 1000000",
    ),
    (
        "establishment",
        "agreement.signed",
        {"by": "mentee", "agreement_version": "1"},
        "data.agreement_version",
        "must be an integer",
    ),
    (
        "establishment",
        "agreement.signed",
        {"by": "witness", "agreement_version": 1},
        "data.by",
        "must be one of: mentee, mentor",
    ),
    # meetings, action items, goals
    ("cultivation", "meeting.held", {}, "data.held_at", "is required"),
    (
        "cultivation",
        "meeting.held",
        {**HELD, "duration_minutes": -5},
        "data.duration_minutes",
        "must be between 1 and 1440",
    ),
    (
        "cultivation",
        "meeting.held",
        {**HELD, "agenda_set_by": "chair"},
        "data.agenda_set_by",
        "must be one of: mentee, mentor",
    ),
    (
        "cultivation",
        "meeting.held",
        {**HELD, "action_items": [{"id": "a9", "description": "x", "owner": "boss"}]},
        "data.action_items[0].owner",
        "must be one of: mentee, mentor",
    ),
    (
        "cultivation",
        "meeting.held",
        {
            **HELD,
            "action_items": [
                {"id": "a9", "description": "x", "owner": "mentee", "due_date": "soon"}
            ],
        },
        "data.action_items[0].due_date",
        "ISO 8601 date",
    ),
    (
        "cultivation",
        "meeting.held",
        {**HELD, "action_items": [{"id": "a1", "description": "x", "owner": "mentee"}]},
        "data.action_items[0].id",
        "action item 'a1' already exists",
    ),
    (
        "cultivation",
        "meeting.held",
        {
            **HELD,
            "action_items": [
                {"id": "a8", "description": "x", "owner": "mentee"},
                {"id": "a8", "description": "y", "owner": "mentor"},
            ],
        },
        "data.action_items[1].id",
        "duplicate action item id 'a8'",
    ),
    ("cultivation", "meeting.missed", {"meeting_id": "m0"}, "data.scheduled_for", "is required"),
    (
        "cultivation",
        "meeting.scheduled",
        {"meeting_id": "m1", "scheduled_for": "2025-03-01"},
        "data.scheduled_for",
        "timezone offset",
    ),
    (
        "cultivation",
        "action_item.completed",
        {"action_item_id": "a404"},
        "data.action_item_id",
        "no action item 'a404'",
    ),
    (
        "cultivation",
        "goal.progressed",
        {"goal_id": "g9", "status": "on_track"},
        "data.goal_id",
        "no goal 'g9' in the agreement (goals: 'g1', 'g2')",
    ),
    (
        "cultivation",
        "goal.progressed",
        {"goal_id": "g1", "status": "done"},
        "data.status",
        "must be one of: on_track, at_risk, achieved, dropped",
    ),
    (
        "cultivation",
        "feedback.given",
        {"from_role": "mentee", "rating": 6},
        "data.rating",
        "must be between 1 and 5",
    ),
    (
        "cultivation",
        "feedback.given",
        {"from_role": "mentee", "rating": 0},
        "data.rating",
        "must be between 1 and 5",
    ),
    (
        "cultivation",
        "feedback.given",
        {"from_role": "mentee", "rating": 4.5},
        "data.rating",
        "must be an integer",
    ),
    (
        "cultivation",
        "concern.raised",
        {"category": "bias", "severity": "critical"},
        "data.severity",
        "must be one of: low, medium, high",
    ),
    (
        "cultivation",
        "concern.raised",
        {"category": "noise", "severity": "low"},
        "data.category",
        "must be one of: mismatch, unresponsive, boundary, wellbeing, bias, other",
    ),
    ("cultivation", "relationship.paused", {"reason": "  "}, "data.reason", "must not be empty"),
    (
        "cultivation",
        "relationship.paused",
        {"reason": "leave", "expected_resume": "soon"},
        "data.expected_resume",
        "ISO 8601 date",
    ),
    ("cultivation", "review.started", {}, "data.trigger", "is required"),
    (
        "cultivation",
        "review.started",
        {"trigger": "boredom"},
        "data.trigger",
        "must be one of: goals_achieved, circumstances_changed, term_ended, scheduled_review, "
        "mismatch",
    ),
    ("cultivation", "relationship.withdrawn", {}, "data.reason_code", "is required"),
    (
        "cultivation",
        "relationship.withdrawn",
        {"reason_code": "safety", "safety_override": "true"},
        "data.safety_override",
        "must be true or false",
    ),
    (
        "refinement",
        "relationship.concluded",
        {"outcome": "great"},
        "data.outcome",
        "must be one of: goals_achieved, partially_achieved, circumstances_changed, mismatch, "
        "other",
    ),
    ("refinement", "relationship.concluded", {}, "data.outcome", "is required"),
    ("reflection", "identification.started", {"now": True}, "data.now", "is not a field"),
]


def _at(phase: Phase) -> Relationship:
    if phase == "establishment":
        # just selected: no agreement proposed yet
        relationship = walk_to("identification")
        relationship.record(
            "mentor.selected", {"mentor_id": "mentor-1", "mentor_consent": True}, ENVELOPE
        )
        return relationship
    return walk_to(phase)


@pytest.mark.parametrize(
    ("phase", "event_type", "data", "path", "message"),
    CASES,
    ids=[f"{case[1]}:{case[3]}:{i}" for i, case in enumerate(CASES)],
)
def test_broken_rule_is_reported_at_its_path(
    phase: Phase, event_type: str, data: Any, path: str, message: str
) -> None:
    relationship = _at(phase)
    version = relationship.version
    with pytest.raises(ValidationFailed) as raised:
        relationship.record(event_type, data, ENVELOPE)
    errors = {error.path: error.message for error in raised.value.errors}
    assert path in errors, errors
    assert message in errors[path]
    assert relationship.version == version


def test_every_problem_is_reported_at_once() -> None:
    relationship = _at("establishment")
    with pytest.raises(ValidationFailed) as raised:
        relationship.record(
            "agreement.proposed",
            _agreement(
                objectives=[],
                goals=[_goal(target_date="never"), _goal(id=None)],
                cadence={"frequency": "hourly"},
            ),
            ENVELOPE,
        )
    assert [error.path for error in raised.value.errors] == [
        "data.objectives",
        "data.goals[0].target_date",
        "data.goals[1].id",
        "data.cadence.frequency",
    ]
    assert raised.value.to_dict()["errors"][0] == {
        "path": "data.objectives",
        "message": "must have at least 1 item",
    }


def test_signing_needs_the_latest_version_of_this_round_and_once_per_party() -> None:
    relationship = _at("establishment")
    relationship.record("agreement.proposed", agreement_data(), ENVELOPE)
    relationship.record("agreement.proposed", agreement_data(), ENVELOPE)
    relationship.record("agreement.signed", {"by": "mentee", "agreement_version": 2}, ENVELOPE)
    cases = [
        (
            {"by": "mentor", "agreement_version": 1},
            "data.agreement_version",
            "superseded by version 2",
        ),
        (
            {"by": "mentor", "agreement_version": 3},
            "data.agreement_version",
            "no agreement version 3",
        ),
        (
            {"by": "mentee", "agreement_version": 2},
            "data.by",
            "the mentee already signed version 2",
        ),
    ]
    for data, path, message in cases:
        with pytest.raises(ValidationFailed) as raised:
            relationship.record("agreement.signed", data, ENVELOPE)
        assert [(e.path, message in e.message) for e in raised.value.errors] == [(path, True)]


def test_an_agreement_from_before_a_refinement_cannot_be_signed() -> None:
    relationship = walk_to("refinement")
    relationship.record("relationship.refined", {"reason": "new goals"}, ENVELOPE)
    with pytest.raises(ValidationFailed) as raised:
        relationship.record("agreement.signed", {"by": "mentee", "agreement_version": 1}, ENVELOPE)
    assert "predates the refinement" in raised.value.errors[0].message


def test_completed_action_items_and_declined_candidates_are_not_open() -> None:
    relationship = walk_to("cultivation")
    relationship.record("action_item.completed", {"action_item_id": "a1"}, ENVELOPE)
    with pytest.raises(ValidationFailed, match="already completed"):
        relationship.record("action_item.completed", {"action_item_id": "a1"}, ENVELOPE)

    identifying = walk_to("identification")
    identifying.record(
        "candidate.declined",
        {"mentor_id": "mentor-1", "by": "mentor", "reason_code": "no_capacity"},
        ENVELOPE,
    )
    with pytest.raises(ValidationFailed, match="has declined"):
        identifying.record(
            "candidate.met", {"mentor_id": "mentor-1", "met_at": "2025-02-01T10:00:00Z"}, ENVELOPE
        )


def test_a_meeting_is_held_or_missed_once() -> None:
    relationship = walk_to("cultivation")
    relationship.record(
        "meeting.scheduled", {"meeting_id": "m1", "scheduled_for": "2025-03-01T10:00:00Z"}, ENVELOPE
    )
    with pytest.raises(ValidationFailed, match="already exists"):
        relationship.record(
            "meeting.scheduled",
            {"meeting_id": "m1", "scheduled_for": "2025-03-02T10:00:00Z"},
            ENVELOPE,
        )
    relationship.record(
        "meeting.missed", {"meeting_id": "m1", "scheduled_for": "2025-03-01T10:00:00Z"}, ENVELOPE
    )
    with pytest.raises(ValidationFailed, match="was already missed"):
        relationship.record("meeting.held", {**HELD, "meeting_id": "m1"}, ENVELOPE)


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        ({}, "mentee_id", "is required"),
        ({"mentee_id": "  "}, "mentee_id", "must not be empty"),
        ({"mentee_id": "u", "predecessor_id": "abc"}, "predecessor_id", "must be a UUID"),
        ({"mentee_id": "u", "mentor_id": "m"}, "mentor_id", "is not a field"),
        ({"mentee_id": "u", "program_id": 7}, "program_id", "must be a string"),
    ],
)
def test_opening_validates_the_body(body: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        Relationship.open(body, ENVELOPE)
    errors = {error.path: error.message for error in raised.value.errors}
    assert message in errors[path]


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        (
            {"actor": {"id": "u1", "role": "boss"}},
            "actor.role",
            "must be one of: mentee, mentor, program_admin, system",
        ),
        ({"actor": {"role": "mentee"}}, "actor.id", "is required"),
        ({"actor": "u1"}, "actor", "must be an object"),
        ({"occurred_at": "2025-01-01T10:00:00"}, "occurred_at", "timezone offset"),
        ({"correlation_id": 5}, "correlation_id", "must be a string"),
    ],
)
def test_the_envelope_is_validated_at_top_level_paths(
    body: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(ValidationFailed) as raised:
        parse_envelope({"type": "x", "data": {}, **body}, source="token", now=NOW)
    errors = {error.path: error.message for error in raised.value.errors}
    assert message in errors[path]


def test_the_envelope_defaults_occurred_at_to_now_and_keeps_the_source() -> None:
    envelope = parse_envelope(
        {"actor": {"id": "u1", "role": "mentor"}, "correlation_id": "c-1"},
        source="hr-system",
        now=NOW,
    )
    assert envelope.occurred_at == NOW
    assert envelope.source == "hr-system"
    assert envelope.actor is not None and envelope.actor.role == "mentor"
    assert envelope.correlation_id == "c-1"


def test_a_meeting_never_scheduled_here_is_held_once_under_its_own_id() -> None:
    """Calendar systems post meetings they scheduled elsewhere: an unknown
    meeting_id is an unscheduled meeting with that id, held or missed once."""
    relationship = walk_to("cultivation")
    relationship.record("meeting.held", {**HELD, "meeting_id": "cal-42"}, ENVELOPE)
    version = relationship.version
    for event_type, data in [
        ("meeting.held", {**HELD, "meeting_id": "cal-42"}),
        ("meeting.missed", {"meeting_id": "cal-42", "scheduled_for": HELD["held_at"]}),
        ("meeting.scheduled", {"meeting_id": "cal-42", "scheduled_for": HELD["held_at"]}),
    ]:
        with pytest.raises(ValidationFailed) as raised:
            relationship.record(event_type, data, ENVELOPE)
        assert [e.path for e in raised.value.errors] == ["data.meeting_id"], event_type
    assert relationship.version == version


@pytest.mark.parametrize(
    ("held_at", "accepted"),
    [
        ("2025-03-01T11:59:59Z", True),
        ("2025-03-01T12:00:00Z", True),
        ("2025-03-01T12:00:01Z", False),
        ("2025-03-01T12:30:00+01:00", True),
        ("2025-03-01T13:30:00+01:00", False),
        ("2025-03-01T11:00:01-01:00", False),
        ("9999-12-31T00:00:00Z", False),
    ],
)
def test_a_meeting_cannot_be_held_after_the_request_arrives(held_at: str, accepted: bool) -> None:
    received = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    envelope = parse_envelope({}, source=None, now=received)
    relationship = walk_to("cultivation")
    data = {"held_at": held_at}
    if accepted:
        relationship.record("meeting.held", data, envelope)
        return
    with pytest.raises(ValidationFailed) as raised:
        relationship.record("meeting.held", data, envelope)
    (error,) = raised.value.errors
    assert error.path == "data.held_at" and "must not be in the future" in error.message


def test_unknown_keys_come_first_then_fields_in_declared_order_per_object() -> None:
    relationship = _at("establishment")
    with pytest.raises(ValidationFailed) as raised:
        relationship.record(
            "agreement.proposed",
            {
                **_agreement(goals=[_goal(), _goal(id="g2", smart=True, horizon="mid")]),
                "cadence": {"frequency": "hourly", "often": True},
                "vision": "x",
                "version": 2,
                "objectives": None,
            },
            ENVELOPE,
        )
    assert [(error.path, error.message) for error in raised.value.errors] == [
        (
            "data.vision",
            "is not a field of agreement.proposed (expected agenda_owner, boundaries, cadence, "
            "communication_channel, confidentiality, deliverables, end_date, feedback_plan, goals, "
            "objectives, start_date, time_commitment)",
        ),
        ("data.version", "is assigned by the service: do not send it"),
        ("data.objectives", "is required"),
        (
            "data.goals[1].smart",
            "is not a field of Goal (expected horizon, id, measure, statement, target_date)",
        ),
        ("data.goals[1].horizon", "must be one of: short, long"),
        (
            "data.cadence.often",
            "is not a field of Cadence (expected duration_minutes, frequency, location, mode)",
        ),
        ("data.cadence.frequency", "must be one of: weekly, biweekly, monthly, quarterly"),
    ]


def test_none_is_absent_for_a_declared_field_only() -> None:
    relationship = _at("reflection")
    event = relationship.record("reflection.recorded", {**REFLECTION, "notes": None}, ENVELOPE)
    assert "notes" not in event.data_fields()
    with pytest.raises(ValidationFailed) as raised:
        relationship.record("reflection.recorded", {**REFLECTION, "mood": None}, ENVELOPE)
    assert [error.path for error in raised.value.errors] == ["data.mood"]

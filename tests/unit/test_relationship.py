"""The Relationship aggregate: deciding, recording, applying, viewing, replaying."""

import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

import workflows
from domain import (
    CONFIDENTIAL_FIELDS,
    EVENT_CLASSES,
    RECORDABLE_TYPES,
    REDACTED,
    Actor,
    DomainError,
    Envelope,
    GuardFailed,
    InvalidTransition,
    Relationship,
    ValidationFailed,
    api_type_of,
    event_class,
    event_data,
    make_mapper,
    rebuild,
    rebuild_from_stored,
    redact,
    relationship_view,
    take_snapshot,
)
from domain.relationship import client_events
from domain.samples import Clock, agreement_data, walk_to
from workflows import PHASES

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ENVELOPE = Envelope(
    occurred_at=NOW,
    actor=Actor("coordinator-7", "program_admin"),
    source="hr-platform",
    correlation_id="corr-1",
    causation_id="cause-1",
)


# --- the order in which a command is refused ----------------------------------------


def test_an_unknown_type_is_a_validation_error_on_type() -> None:
    relationship = walk_to("reflection")
    for event_type in ("meeting.teleported", "relationship.opened", "", None):
        with pytest.raises(ValidationFailed) as raised:
            relationship.record(event_type, {}, ENVELOPE)  # type: ignore[arg-type]  # None on purpose
        assert [error.path for error in raised.value.errors] == ["type"]


def test_phase_is_checked_before_data() -> None:
    relationship = walk_to("reflection")
    with pytest.raises(InvalidTransition) as raised:
        relationship.record("meeting.held", {"held_at": "not a date"}, ENVELOPE)
    assert raised.value.to_dict() == {
        "event_type": "meeting.held",
        "current_phase": "reflection",
        "paused": False,
        "allowed_events": [
            "identification.started",
            "relationship.withdrawn",
            "reflection.recorded",
            "concern.raised",
            "concern.resolved",
            "advocacy.recorded",
        ],  # the lifecycle accepts risk.* too, but only the service records them
    }


def test_data_is_checked_before_guards() -> None:
    relationship = walk_to("identification")
    with pytest.raises(ValidationFailed):
        relationship.record(
            "mentor.selected", {"mentor_id": "mentor-1", "mentor_consent": "no"}, ENVELOPE
        )
    with pytest.raises(GuardFailed):
        relationship.record(
            "mentor.selected", {"mentor_id": "mentor-1", "mentor_consent": False}, ENVELOPE
        )


def test_invalid_transition_while_paused_reports_paused() -> None:
    relationship = walk_to("cultivation")
    relationship.record("relationship.paused", {"reason": "parental leave"}, ENVELOPE)
    with pytest.raises(InvalidTransition) as raised:
        relationship.record("meeting.held", {"held_at": "2025-06-02T10:00:00Z"}, ENVELOPE)
    assert raised.value.paused is True
    assert set(raised.value.allowed_events) == {
        "relationship.resumed",
        "concern.raised",
        "concern.resolved",
        "advocacy.recorded",
        "reflection.recorded",
        "relationship.withdrawn",
    }


# --- guards, through the aggregate ----------------------------------------------------


def _guard_failure(
    relationship: Relationship, event_type: str, data: dict[str, Any] | None
) -> GuardFailed:
    version = relationship.version
    with pytest.raises(GuardFailed) as raised:
        relationship.record(event_type, data, ENVELOPE)
    assert relationship.version == version, "nothing is recorded"
    assert relationship.pending_events[-1].originator_version == version
    return raised.value


def _phase(relationship: Relationship) -> workflows.Phase:
    """The phase, read anew: mypy would keep ``relationship.phase`` narrowed by an
    earlier assert across the ``record`` calls that change it."""
    return relationship.phase


def test_identification_needs_an_initial_reflection_with_a_development_area() -> None:
    relationship = Relationship.open({"mentee_id": "mentee-1"}, ENVELOPE)
    relationship.record(
        "reflection.recorded", {"author_role": "mentee", "kind": "initial"}, ENVELOPE
    )
    relationship.record(
        "reflection.recorded",
        {"author_role": "mentor", "kind": "initial", "development_areas": ["grants"]},
        ENVELOPE,
    )
    failure = _guard_failure(relationship, "identification.started", None)
    assert failure.unmet_rules[0].guard == "mentee_listed_initial_development_areas"
    assert "'initial' reflection" in failure.unmet[0]
    assert failure.to_dict()["unmet"] == failure.unmet

    relationship.record(
        "reflection.recorded",
        {"author_role": "mentee", "kind": "initial", "development_areas": ["grants"]},
        ENVELOPE,
    )
    event = relationship.record("identification.started", None, ENVELOPE)
    assert (event.from_phase, event.to_phase, relationship.phase) == (
        "reflection",
        "identification",
        "identification",
    )


def test_selecting_needs_a_met_consenting_candidate_who_has_not_declined() -> None:
    relationship = walk_to("identification")
    relationship.record("candidate.proposed", {"mentor_id": "mentor-2"}, ENVELOPE)
    failure = _guard_failure(
        relationship, "mentor.selected", {"mentor_id": "mentor-2", "mentor_consent": False}
    )
    assert [rule.guard for rule in failure.unmet_rules] == ["mentor_was_met", "mentor_consented"]

    relationship.record(
        "candidate.declined",
        {"mentor_id": "mentor-1", "by": "mentor", "reason_code": "no_capacity"},
        ENVELOPE,
    )
    failure = _guard_failure(
        relationship, "mentor.selected", {"mentor_id": "mentor-1", "mentor_consent": True}
    )
    assert [rule.guard for rule in failure.unmet_rules] == ["mentor_has_not_declined"]


def test_establishing_needs_the_latest_version_signed_by_both_and_complete() -> None:
    relationship = walk_to("establishment")  # version 1 signed by both
    incomplete = agreement_data()
    incomplete["goals"] = [{"id": "g1", "statement": "grow"}]
    incomplete["end_date"] = incomplete["start_date"]
    relationship.record("agreement.proposed", incomplete, ENVELOPE)
    relationship.record("agreement.signed", {"by": "mentor", "agreement_version": 2}, ENVELOPE)
    failure = _guard_failure(relationship, "relationship.established", None)
    assert [rule.guard for rule in failure.unmet_rules] == [
        "agreement_signed_by_mentee",
        "agreement_has_measurable_dated_goal",
        "agreement_ends_after_it_starts",
    ]


def test_withdrawal_once_cultivating_needs_a_justified_safety_override() -> None:
    relationship = walk_to("cultivation")
    failure = _guard_failure(relationship, "relationship.withdrawn", {"reason_code": "moved"})
    assert [rule.guard for rule in failure.unmet_rules] == [
        "safety_override_is_set",
        "justification_is_given",
    ]
    event = relationship.record(
        "relationship.withdrawn",
        {"reason_code": "safety", "safety_override": True, "justification": "boundary breach"},
        ENVELOPE,
    )
    assert event.to_phase == relationship.phase == "concluded"
    assert relationship.outcome == "withdrawn"
    assert relationship.allowed_events() == []


@pytest.mark.parametrize("phase", ["reflection", "identification", "establishment"])
def test_withdrawal_before_cultivation_is_free(phase: workflows.Phase) -> None:
    relationship = walk_to(phase)
    relationship.record("relationship.withdrawn", {"reason_code": "changed_programme"}, ENVELOPE)
    assert relationship.phase == "concluded"


def test_concluding_needs_the_mentees_closing_reflection_in_this_refinement() -> None:
    relationship = walk_to("cultivation")
    relationship.record(
        "reflection.recorded", {"author_role": "mentee", "kind": "closing"}, ENVELOPE
    )
    relationship.record("review.started", {"trigger": "goals_achieved"}, ENVELOPE)
    failure = _guard_failure(relationship, "relationship.concluded", {"outcome": "goals_achieved"})
    assert [rule.guard for rule in failure.unmet_rules] == [
        "mentee_closing_reflection_in_this_refinement"
    ]
    relationship.record(
        "reflection.recorded", {"author_role": "mentee", "kind": "closing"}, ENVELOPE
    )
    relationship.record(
        "relationship.concluded", {"outcome": "goals_achieved", "summary": "done"}, ENVELOPE
    )
    assert (relationship.phase, relationship.outcome) == ("concluded", "goals_achieved")


def test_refining_goes_back_to_establishment_and_needs_a_new_agreement_version() -> None:
    relationship = walk_to("cultivation")
    relationship.record("review.started", {"trigger": "circumstances_changed"}, ENVELOPE)
    _guard_failure(relationship, "relationship.refined", {})
    relationship.record(
        "reflection.recorded", {"author_role": "mentor", "kind": "interim"}, ENVELOPE
    )
    relationship.record("relationship.refined", {"reason": "new goals"}, ENVELOPE)
    assert relationship.phase == "establishment"

    failure = _guard_failure(relationship, "relationship.established", None)
    assert [rule.guard for rule in failure.unmet_rules] == [
        "agreement_proposed_in_this_establishment"
    ]

    relationship.record("agreement.proposed", agreement_data(("g3",)), ENVELOPE)
    relationship.record("agreement.signed", {"by": "mentee", "agreement_version": 2}, ENVELOPE)
    relationship.record("agreement.signed", {"by": "mentor", "agreement_version": 2}, ENVELOPE)
    relationship.record("relationship.established", None, ENVELOPE)
    assert _phase(relationship) == "cultivation"
    assert [goal.id for goal in relationship.goals] == ["g3"]
    with pytest.raises(ValidationFailed, match="no goal 'g1'"):
        relationship.record("goal.progressed", {"goal_id": "g1", "status": "achieved"}, ENVELOPE)


# --- state -----------------------------------------------------------------------------


def test_pause_and_resume_keep_the_phase_and_a_phase_change_clears_the_pause() -> None:
    relationship = walk_to("establishment")
    relationship.record(
        "relationship.paused", {"reason": "sabbatical", "expected_resume": "2025-09-01"}, ENVELOPE
    )
    assert relationship.paused and relationship.phase == "establishment"
    assert relationship_view(relationship)["pause"] == {
        "reason": "sabbatical",
        "since": NOW.isoformat(),
        "expected_resume": "2025-09-01",
    }
    relationship.record("relationship.resumed", None, ENVELOPE)
    assert not relationship.paused
    relationship.record("relationship.paused", {"reason": "again"}, ENVELOPE)
    relationship.record("relationship.withdrawn", {"reason_code": "left"}, ENVELOPE)
    assert (relationship.phase, relationship.paused) == ("concluded", False)


def test_the_view_is_json_ready_and_complete() -> None:
    relationship = walk_to("cultivation")
    relationship.record(
        "goal.progressed", {"goal_id": "g1", "status": "at_risk", "note": "slow"}, ENVELOPE
    )
    relationship.record(
        "concern.raised",
        {"category": "wellbeing", "severity": "high", "detail": "secret"},
        ENVELOPE,
    )
    relationship.record(
        "feedback.given", {"from_role": "mentee", "rating": 5, "comment": "secret"}, ENVELOPE
    )
    view = relationship_view(relationship)
    assert json.loads(json.dumps(view)) == view
    assert view["phase"] == "cultivation" and view["version"] == relationship.version
    assert view["mentor_id"] == "mentor-1"
    assert view["agreement"]["version"] == 1 and view["agreement"]["fully_signed"] is True
    assert view["agreement"]["signed_by"] == ["mentee", "mentor"]
    assert [(g["id"], g["status"]) for g in view["goals"]] == [
        ("g1", "at_risk"),
        ("g2", "not_started"),
    ]
    assert [item["id"] for item in view["open_action_items"]] == ["a1"]
    assert view["meetings_held"] == 1
    assert view["concerns"]["high_severity"] == 1
    assert view["feedback"]["by_role"]["mentee"] == {"count": 1, "average_rating": 5}
    assert set(view["phase_entered_at"]) == {
        "reflection",
        "identification",
        "establishment",
        "cultivation",
    }
    assert view["current_phase_entered_at"] == view["phase_entered_at"]["cultivation"]
    assert view["allowed_events"] == client_events(workflows.allowed_events(relationship))
    assert "risk.flagged" in workflows.allowed_events(relationship)
    assert "risk.flagged" not in view["allowed_events"]
    assert "secret" not in json.dumps(view), "the state never holds confidential fields"
    assert view["candidates"][0]["status"] == "met"


# --- events: envelope, type, data -----------------------------------------------------


def test_a_recorded_event_carries_its_envelope_type_phases_and_data() -> None:
    relationship = walk_to("cultivation")
    event = relationship.record(
        "meeting.held",
        {"held_at": "2025-06-01T10:00:00+02:00", "topics": ["grant"], "notes": "private"},
        ENVELOPE,
    )
    assert event is relationship.pending_events[-1]
    assert api_type_of(event) == event.api_type == "meeting.held"
    assert event.envelope == ENVELOPE
    assert (event.from_phase, event.to_phase, event.changes_phase) == (
        "cultivation",
        "cultivation",
        False,
    )
    assert event.originator_version == relationship.version
    assert event_data(event) == {
        "held_at": "2025-06-01T10:00:00+02:00",
        "topics": ["grant"],
        "notes": "private",
    }
    assert event_data(event, redacted=True)["notes"] == REDACTED


def test_the_type_mapping_covers_every_event_class_both_ways() -> None:
    nested = {
        value
        for value in vars(Relationship).values()
        if isinstance(value, type)
        and issubclass(value, Relationship.Event)
        and value not in (Relationship.Event, Relationship.Created)  # eventsourcing's own
    }
    assert set(EVENT_CLASSES.values()) == nested
    assert set(RECORDABLE_TYPES) == set(workflows.EVENT_TYPES)
    for api_type, cls in EVENT_CLASSES.items():
        assert event_class(api_type) is cls
        assert api_type_of(cls) == api_type
        assert cls.class_version == 1


def test_confidential_fields_are_marked_once_and_exist() -> None:
    confidential_names = {"notes", "comment", "detail", "values", "work_style"}
    also = {
        "concern.resolved": {"note"},  # a resolution's note may describe the concern
        "advocacy.recorded": {"description"},  # whom the mentor spoke to, for what
    }
    for api_type, cls in EVENT_CLASSES.items():
        fields = set(cls.__dataclass_fields__)
        marked = CONFIDENTIAL_FIELDS.get(api_type, frozenset())
        assert marked <= fields, api_type
        assert fields & confidential_names | also.get(api_type, set()) == marked, api_type


def test_redact_hides_only_given_confidential_fields() -> None:
    data = {"author_role": "mentee", "kind": "initial", "values": "family", "notes": None}
    assert redact("reflection.recorded", data) == {
        "author_role": "mentee",
        "kind": "initial",
        "values": REDACTED,
        "notes": None,
    }
    assert redact("goal.progressed", {"note": "visible"}) == {"note": "visible"}


def test_an_envelope_needs_a_timezone_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Envelope(occurred_at=datetime(2025, 1, 1))


def test_opening_records_the_created_event() -> None:
    predecessor = uuid4()
    relationship_id = uuid4()
    relationship = Relationship.open(
        {
            "mentee_id": "m-9",
            "mentee_name": "Ada",
            "program_id": "p-1",
            "predecessor_id": str(predecessor),
        },
        ENVELOPE,
        id=relationship_id,
    )
    (opened,) = relationship.pending_events
    assert isinstance(opened, Relationship.Opened) and opened.api_type == "relationship.opened"
    assert relationship.id == relationship_id and relationship.version == 1
    assert relationship.predecessor_id == predecessor
    assert relationship.opened_at == NOW and relationship.phase == "reflection"
    assert relationship_view(relationship)["predecessor_id"] == str(predecessor)


def test_commands_only_ever_raise_domain_errors() -> None:
    """Junk of every shape is refused with a domain error (the API never answers 500)."""
    junk: list[Any] = [None, 1, "x", [], [{}], {"": None}, {"a": {"b": []}}, {"held_at": ["x"]}]
    for phase in PHASES:
        relationship = walk_to(phase)
        for event_type in RECORDABLE_TYPES:
            for data in junk:
                with contextlib.suppress(DomainError):
                    relationship.record(event_type, data, ENVELOPE)


# --- replay ------------------------------------------------------------------------------


def test_replay_reproduces_every_version_and_moment() -> None:
    clock = Clock(start=NOW, step=timedelta(minutes=1))
    relationship = Relationship.open({"mentee_id": "mentee-1"}, clock.envelope())
    views = {1: relationship_view(relationship)}
    for event_type, data in [
        (
            "reflection.recorded",
            {"author_role": "mentee", "kind": "initial", "development_areas": ["x"]},
        ),
        ("identification.started", None),
        ("candidate.proposed", {"mentor_id": "mentor-1"}),
    ]:
        relationship.record(event_type, data, clock.envelope())
        views[relationship.version] = relationship_view(relationship)
    events = relationship.collect_events()
    for version, view in views.items():
        rebuilt = rebuild(events, version=version)
        assert rebuilt is not None and relationship_view(rebuilt) == view
    third = events[2]
    at_third = rebuild(events, as_of=third.timestamp)
    assert at_third is not None and at_third.version == 3
    assert rebuild([]) is None


@pytest.mark.parametrize(
    "mapper_options",
    [{}, {"compress": True}, {"cipher_key": "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0NTY="}],
)
def test_rebuild_from_stored_events_and_snapshots(mapper_options: dict[str, Any]) -> None:
    mapper = make_mapper(**mapper_options)
    relationship = walk_to("refinement")
    events = relationship.collect_events()
    stored = [mapper.to_stored_event(event) for event in events]
    views = {}
    for version in range(1, len(events) + 1):
        rebuilt = rebuild_from_stored(mapper, stored, version=version)
        assert rebuilt is not None
        views[version] = rebuilt
    latest = views[len(events)]
    assert {k: v for k, v in vars(latest).items() if k != "_pending_events"} == {
        k: v for k, v in vars(relationship).items() if k != "_pending_events"
    }

    snapshot = mapper.to_stored_event(take_snapshot(views[6]))
    for version in (6, 9, len(events)):
        from_snapshot = rebuild_from_stored(mapper, stored, snapshot=snapshot, version=version)
        assert from_snapshot is not None
        assert relationship_view(from_snapshot) == relationship_view(views[version])
        assert vars(from_snapshot) == vars(views[version])
    older = rebuild_from_stored(mapper, stored, snapshot=snapshot, version=4)
    assert older is not None and relationship_view(older) == relationship_view(views[4]), (
        "a later snapshot is ignored"
    )


def test_replay_never_checks_the_rules() -> None:
    """A history recorded under other rules still loads (events are facts)."""
    relationship = walk_to("identification")
    events = list(relationship.collect_events())
    # A 'mentor.selected' without any candidate: refused by today's rules, but a fact once stored.
    # eventsourcing makes each event class a dataclass when it is defined; mypy
    # sees only the fields of the library's base classes, so they are passed in a dict.
    fields: dict[str, Any] = dict(
        originator_id=relationship.id,
        originator_version=relationship.version + 1,
        timestamp=NOW,
        actor=None,
        occurred_at=NOW,
        source=None,
        correlation_id=None,
        causation_id=None,
        from_phase="identification",
        to_phase="establishment",
        mentor_id="someone-else",
        mentor_consent=False,
    )
    forged = Relationship.MentorSelected(**fields)
    rebuilt = rebuild([*events, forged])
    assert rebuilt is not None and (rebuilt.phase, rebuilt.mentor_id) == (
        "establishment",
        "someone-else",
    )

"""The lifecycle against the tables of docs/events.md (phases and transitions).

The expectations here are written out from the design document, not derived
from the machine, so a change to the machine that departs from the design
fails a test.
"""

from dataclasses import replace
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from statemachine import StateMachine
from statemachine.exceptions import TransitionNotAllowed

import workflows
from workflows import (
    PHASES,
    Accepted,
    AgreementFacts,
    GuardUnmet,
    LifecycleFacts,
    NotAccepted,
    Phase,
    Snapshot,
    check,
)

MENTOR = "mentor-1"
GOOD_AGREEMENT = AgreementFacts(
    version=1,
    signed_by=frozenset({"mentee", "mentor"}),
    measurable_dated_goals=1,
    ends_after_start=True,
    proposed_in_current_establishment=True,
)

# --- docs/events.md: transitions (event type, from, to, facts and data meeting the guard) ---

GUARD_MET: list[tuple[str, Phase, Phase, LifecycleFacts, dict[str, Any]]] = [
    (
        "identification.started",
        "reflection",
        "identification",
        LifecycleFacts("reflection", mentee_initial_development_areas=1),
        {},
    ),
    (
        "mentor.selected",
        "identification",
        "establishment",
        LifecycleFacts(
            "identification",
            mentee_id="mentee-1",
            candidates_proposed=frozenset({MENTOR}),
            candidates_met=frozenset({MENTOR}),
        ),
        {"mentor_id": MENTOR, "mentor_consent": True},
    ),
    (
        "relationship.established",
        "establishment",
        "cultivation",
        LifecycleFacts("establishment", latest_agreement=GOOD_AGREEMENT),
        {},
    ),
    ("review.started", "cultivation", "refinement", LifecycleFacts("cultivation"), {}),
    (
        "relationship.refined",
        "refinement",
        "establishment",
        LifecycleFacts("refinement", refinement_reflections=frozenset({("mentor", "interim")})),
        {},
    ),
    (
        "relationship.concluded",
        "refinement",
        "concluded",
        LifecycleFacts("refinement", refinement_reflections=frozenset({("mentee", "closing")})),
        {"outcome": "goals_achieved"},
    ),
    ("relationship.withdrawn", "reflection", "concluded", LifecycleFacts("reflection"), {}),
    ("relationship.withdrawn", "identification", "concluded", LifecycleFacts("identification"), {}),
    ("relationship.withdrawn", "establishment", "concluded", LifecycleFacts("establishment"), {}),
    (
        "relationship.withdrawn",
        "cultivation",
        "concluded",
        LifecycleFacts("cultivation"),
        {"safety_override": True, "justification": "boundary violation reported"},
    ),
    (
        "relationship.withdrawn",
        "refinement",
        "concluded",
        LifecycleFacts("refinement"),
        {"safety_override": True, "justification": "wellbeing risk"},
    ),
]


def _met(event_type: str, source: str) -> tuple[LifecycleFacts, dict[str, Any]]:
    for event, src, _, facts, data in GUARD_MET:
        if (event, src) == (event_type, source):
            return facts, data
    raise KeyError((event_type, source))


def _with_agreement(**changes: Any) -> LifecycleFacts:
    return LifecycleFacts("establishment", latest_agreement=replace(GOOD_AGREEMENT, **changes))


# (event type, source phase, guard expected unmet, facts, data): each breaks exactly one rule.
GUARD_BROKEN: list[tuple[str, Phase, str, LifecycleFacts, dict[str, Any]]] = [
    (
        "identification.started",
        "reflection",
        "mentee_listed_initial_development_areas",
        LifecycleFacts("reflection"),
        {},
    ),
    *[
        ("mentor.selected", "identification", guard, facts, data)
        for guard, facts, data in [
            (
                "mentor_was_proposed",
                replace(
                    _met("mentor.selected", "identification")[0], candidates_proposed=frozenset()
                ),
                {"mentor_id": MENTOR, "mentor_consent": True},
            ),
            (
                "mentor_was_met",
                replace(_met("mentor.selected", "identification")[0], candidates_met=frozenset()),
                {"mentor_id": MENTOR, "mentor_consent": True},
            ),
            (
                "mentor_has_not_declined",
                replace(
                    _met("mentor.selected", "identification")[0],
                    candidates_declined=frozenset({MENTOR}),
                ),
                {"mentor_id": MENTOR, "mentor_consent": True},
            ),
            (
                "mentor_consented",
                _met("mentor.selected", "identification")[0],
                {"mentor_id": MENTOR, "mentor_consent": False},
            ),
        ]
    ],
    *[
        ("relationship.established", "establishment", guard, facts, {})
        for guard, facts in [
            (
                "agreement_proposed_in_this_establishment",
                _with_agreement(proposed_in_current_establishment=False),
            ),
            ("agreement_signed_by_mentee", _with_agreement(signed_by=frozenset({"mentor"}))),
            ("agreement_signed_by_mentor", _with_agreement(signed_by=frozenset({"mentee"}))),
            ("agreement_has_measurable_dated_goal", _with_agreement(measurable_dated_goals=0)),
            ("agreement_ends_after_it_starts", _with_agreement(ends_after_start=False)),
        ]
    ],
    (
        "relationship.refined",
        "refinement",
        "reflected_in_this_refinement",
        LifecycleFacts("refinement", refinement_reflections=frozenset({("mentee", "initial")})),
        {},
    ),
    (
        "relationship.concluded",
        "refinement",
        "mentee_closing_reflection_in_this_refinement",
        LifecycleFacts("refinement", refinement_reflections=frozenset({("mentor", "closing")})),
        {"outcome": "goals_achieved"},
    ),
    *[
        ("relationship.withdrawn", phase, guard, LifecycleFacts(phase), data)
        for phase in ("cultivation", "refinement")
        for guard, data in [
            ("safety_override_is_set", {"safety_override": False, "justification": "why"}),
            ("justification_is_given", {"safety_override": True, "justification": "   "}),
        ]
    ],
]

# --- docs/events.md: events that do not change phase, and the phases that accept them ------

EVERY_PHASE_BUT_CONCLUDED: tuple[Phase, ...] = (
    "reflection",
    "identification",
    "establishment",
    "cultivation",
    "refinement",
)
IN_PHASE: dict[str, tuple[Phase, ...]] = {
    "reflection.recorded": EVERY_PHASE_BUT_CONCLUDED,
    "concern.raised": EVERY_PHASE_BUT_CONCLUDED,
    "concern.resolved": EVERY_PHASE_BUT_CONCLUDED,
    "advocacy.recorded": EVERY_PHASE_BUT_CONCLUDED,
    "risk.flagged": EVERY_PHASE_BUT_CONCLUDED,
    "risk.cleared": EVERY_PHASE_BUT_CONCLUDED,
    "candidate.proposed": ("identification",),
    "candidate.met": ("identification",),
    "candidate.declined": ("identification",),
    "agreement.proposed": ("establishment",),
    "agreement.signed": ("establishment",),
    "meeting.scheduled": ("cultivation",),
    "meeting.held": ("cultivation", "refinement"),
    "meeting.missed": ("cultivation",),
    "action_item.completed": ("cultivation",),
    "goal.progressed": ("cultivation",),
    "feedback.given": ("cultivation", "refinement"),
    "relationship.paused": ("establishment", "cultivation"),
    "relationship.resumed": ("establishment", "cultivation"),
}
TRANSITION_SOURCES: dict[str, tuple[Phase, ...]] = {
    "identification.started": ("reflection",),
    "mentor.selected": ("identification",),
    "relationship.established": ("establishment",),
    "review.started": ("cultivation",),
    "relationship.refined": ("refinement",),
    "relationship.concluded": ("refinement",),
    "relationship.withdrawn": (
        "reflection",
        "identification",
        "establishment",
        "cultivation",
        "refinement",
    ),
}
ACCEPTED_WHILE_PAUSED = {
    "relationship.resumed",
    "concern.raised",
    "concern.resolved",
    "advocacy.recorded",
    "risk.flagged",
    "risk.cleared",
    "reflection.recorded",
    "relationship.withdrawn",
}
PAUSABLE: tuple[Phase, ...] = ("establishment", "cultivation")


def _facts_for(phase: Phase, paused: bool = False) -> LifecycleFacts:
    """Facts with one open concern, ``c1`` (see :data:`OPEN_CONCERN`), decided
    for a mentor (advocacy is the mentor's to record)."""
    return LifecycleFacts(
        phase,
        paused=paused,
        concerns_raised=frozenset({"c1"}),
        concerns_open=frozenset({"c1"}),
        actor_role="mentor",
    )


OPEN_CONCERN = {"concern_id": "c1"}


def test_the_machine_knows_exactly_the_event_types_of_the_design() -> None:
    assert set(workflows.EVENT_TYPES) == set(IN_PHASE) | set(TRANSITION_SOURCES)
    assert set(workflows.PHASES) == {
        "reflection",
        "identification",
        "establishment",
        "cultivation",
        "refinement",
        "concluded",
    }
    assert workflows.Lifecycle.initial_state.id == "reflection"
    assert [state.id for state in workflows.Lifecycle.final_states] == ["concluded"]


@pytest.mark.parametrize("phase", PHASES)
def test_the_compiled_table_lists_what_the_library_lists(phase: Phase) -> None:
    """The table is read through the library's public API; an instance of the
    machine, asked the same way, agrees on every event and every transition."""
    machine = workflows.machine_at(phase)
    assert tuple(str(event.id) for event in machine.events) == workflows.EVENT_TYPES
    assert {route.event_type for route in workflows.ROUTES if route.source == phase} == {
        str(event.id) for event in machine.allowed_events
    }


def test_it_is_a_strict_state_machine_not_a_statechart() -> None:
    assert issubclass(workflows.Lifecycle, StateMachine)
    assert workflows.Lifecycle.allow_event_without_transition is False
    assert workflows.Lifecycle.catch_errors_as_events is False


@pytest.mark.parametrize(
    ("event_type", "source", "target", "facts", "data"),
    GUARD_MET,
    ids=[f"{e}-from-{s}" for e, s, *_ in GUARD_MET],
)
def test_transition_is_accepted_when_its_guard_is_met(
    event_type: str, source: Phase, target: Phase, facts: LifecycleFacts, data: dict[str, Any]
) -> None:
    assert check(event_type, facts, data) == Accepted(event_type, source, target)


@pytest.mark.parametrize(
    ("event_type", "source", "guard", "facts", "data"),
    GUARD_BROKEN,
    ids=[f"{e}-from-{s}-{g}" for e, s, g, *_ in GUARD_BROKEN],
)
def test_transition_is_refused_naming_the_one_unmet_rule(
    event_type: str, source: str, guard: str, facts: LifecycleFacts, data: dict[str, Any]
) -> None:
    decision = check(event_type, facts, data)
    assert isinstance(decision, GuardUnmet)
    assert [info.name for info in decision.unmet] == [guard]
    assert decision.messages == [workflows.guard_info(getattr(workflows.guards, guard)).unmet]
    assert decision.messages[0]  # something a user can act on


def test_establishment_without_any_agreement_lists_every_agreement_rule() -> None:
    decision = check("relationship.established", LifecycleFacts("establishment"))
    assert isinstance(decision, GuardUnmet)
    assert [info.name for info in decision.unmet] == [
        "agreement_proposed_in_this_establishment",
        "agreement_signed_by_mentee",
        "agreement_signed_by_mentor",
        "agreement_has_measurable_dated_goal",
        "agreement_ends_after_it_starts",
    ]


def test_the_unmet_message_of_identification_says_what_to_do() -> None:
    decision = check("identification.started", LifecycleFacts("reflection"))
    assert isinstance(decision, GuardUnmet)
    assert decision.messages == [
        "the mentee must record an 'initial' reflection (reflection.recorded with author_role "
        "'mentee', kind 'initial') listing at least one development area before identification "
        "can start"
    ]


ALL_TYPES = sorted(set(IN_PHASE) | set(TRANSITION_SOURCES))
NOT_ACCEPTED = [
    (event_type, phase)
    for event_type in ALL_TYPES
    for phase in PHASES
    if phase not in IN_PHASE.get(event_type, TRANSITION_SOURCES.get(event_type, ()))
]


@pytest.mark.parametrize(
    ("event_type", "phase"), NOT_ACCEPTED, ids=[f"{e}-in-{p}" for e, p in NOT_ACCEPTED]
)
def test_event_is_not_accepted_in_any_other_phase(event_type: str, phase: Phase) -> None:
    for paused in (False, True) if phase in PAUSABLE else (False,):
        decision = check(event_type, _facts_for(phase, paused))
        assert decision == NotAccepted(
            event_type,
            phase,
            paused,
            tuple(workflows.allowed_events(Snapshot(phase, paused))),
        )


IN_PHASE_CASES = [
    (e, p) for e, phases in IN_PHASE.items() for p in phases if e != "relationship.resumed"
]


@pytest.mark.parametrize(
    ("event_type", "phase"), IN_PHASE_CASES, ids=[f"{e}-in-{p}" for e, p in IN_PHASE_CASES]
)
def test_in_phase_event_is_accepted_and_keeps_the_phase(event_type: str, phase: Phase) -> None:
    decision = check(event_type, _facts_for(phase), OPEN_CONCERN)
    assert decision == Accepted(event_type, phase, phase)


@pytest.mark.parametrize("phase", EVERY_PHASE_BUT_CONCLUDED)
def test_only_an_open_concern_can_be_resolved(phase: Phase) -> None:
    unknown = check("concern.resolved", _facts_for(phase), {"concern_id": "c9"})
    assert isinstance(unknown, GuardUnmet)
    assert [info.name for info in unknown.unmet] == ["concern_was_raised"]
    resolved = LifecycleFacts(phase, concerns_raised=frozenset({"c1"}))
    again = check("concern.resolved", resolved, OPEN_CONCERN)
    assert isinstance(again, GuardUnmet)
    assert [info.name for info in again.unmet] == ["concern_is_still_open"]
    assert "already resolved" in again.messages[0]


@pytest.mark.parametrize("phase", EVERY_PHASE_BUT_CONCLUDED)
@pytest.mark.parametrize("role", ["mentee", "program_admin", "system", None])
def test_only_the_mentor_records_advocacy(phase: Phase, role: str | None) -> None:
    facts = LifecycleFacts(phase, actor_role=role)
    decision = check("advocacy.recorded", facts, {"kind": "introduction"})
    assert isinstance(decision, GuardUnmet)
    assert [info.name for info in decision.unmet] == ["recorded_by_the_mentor"]
    assert "actor.role 'mentor'" in decision.messages[0]
    mentor = LifecycleFacts(phase, actor_role="mentor")
    assert check("advocacy.recorded", mentor, {"kind": "introduction"}) == Accepted(
        "advocacy.recorded", phase, phase
    )


@pytest.mark.parametrize("phase", PHASES)
def test_allowed_events_when_not_paused_match_the_design(phase: Phase) -> None:
    expected = {e for e, phases in IN_PHASE.items() if phase in phases} | {
        e for e, sources in TRANSITION_SOURCES.items() if phase in sources
    }
    expected.discard("relationship.resumed")  # only when paused
    assert set(workflows.allowed_events(Snapshot(phase))) == expected


@pytest.mark.parametrize("phase", PAUSABLE)
def test_while_paused_only_resume_concern_reflection_and_withdrawal_are_accepted(
    phase: Phase,
) -> None:
    assert set(workflows.allowed_events(Snapshot(phase, paused=True))) == ACCEPTED_WHILE_PAUSED
    for event_type in ALL_TYPES:
        decision = check(
            event_type,
            _facts_for(phase, paused=True),
            {"safety_override": True, "justification": "j", **OPEN_CONCERN},
        )
        if event_type in ACCEPTED_WHILE_PAUSED:
            assert isinstance(decision, Accepted), event_type
        else:
            assert isinstance(decision, NotAccepted), event_type
            assert decision.paused is True


@pytest.mark.parametrize("phase", PAUSABLE)
def test_cannot_pause_twice_nor_resume_when_not_paused(phase: Phase) -> None:
    assert isinstance(check("relationship.paused", _facts_for(phase)), Accepted)
    assert isinstance(check("relationship.paused", _facts_for(phase, paused=True)), NotAccepted)
    assert isinstance(check("relationship.resumed", _facts_for(phase, paused=True)), Accepted)
    assert isinstance(check("relationship.resumed", _facts_for(phase)), NotAccepted)


def test_a_paused_relationship_can_still_be_withdrawn_before_cultivation_freely() -> None:
    decision = check("relationship.withdrawn", _facts_for("establishment", paused=True))
    assert decision == Accepted("relationship.withdrawn", "establishment", "concluded")


def test_concluded_accepts_nothing() -> None:
    assert workflows.allowed_events(Snapshot("concluded")) == []
    for event_type in ALL_TYPES:
        assert isinstance(check(event_type, _facts_for("concluded")), NotAccepted)


def test_unknown_event_types_and_phases() -> None:
    assert isinstance(check("relationship.teleported", _facts_for("cultivation")), NotAccepted)
    with pytest.raises(ValueError, match="unknown phase"):
        # Deliberately not a Phase: the check at run time is what is tested.
        workflows.allowed_events(Snapshot(cast(Phase, "limbo")))


# --- the compiled table and the library's own engine agree --------------------------

agreements = st.builds(
    AgreementFacts,
    version=st.integers(1, 3),
    signed_by=st.frozensets(st.sampled_from(["mentee", "mentor"])),
    measurable_dated_goals=st.integers(0, 2),
    ends_after_start=st.booleans(),
    proposed_in_current_establishment=st.booleans(),
)
ids = st.sampled_from(["mentee-1", MENTOR, "mentor-2"])
facts_strategy = st.builds(
    LifecycleFacts,
    phase=st.sampled_from(PHASES),
    paused=st.booleans(),
    mentee_id=st.just("mentee-1"),
    mentee_initial_development_areas=st.integers(0, 2),
    candidates_proposed=st.frozensets(ids),
    candidates_met=st.frozensets(ids),
    candidates_declined=st.frozensets(ids),
    latest_agreement=st.none() | agreements,
    refinement_reflections=st.frozensets(
        st.tuples(
            st.sampled_from(["mentee", "mentor"]),
            st.sampled_from(["initial", "interim", "closing"]),
        )
    ),
)
data_strategy = st.fixed_dictionaries(
    {},
    optional={
        "mentor_id": ids,
        "mentor_consent": st.booleans(),
        "outcome": st.sampled_from(["goals_achieved", "other"]),
        "safety_override": st.booleans(),
        "justification": st.sampled_from(["", " ", "unsafe"]),
    },
)


@given(facts=facts_strategy, event_type=st.sampled_from(ALL_TYPES), data=data_strategy)
def test_decisions_agree_with_the_library_engine(
    facts: LifecycleFacts, event_type: str, data: dict[str, Any]
) -> None:
    """``check`` (compiled table) and ``Lifecycle.send`` (the library) never disagree."""
    decision = check(event_type, facts, data)
    machine = workflows.machine_at(facts.phase)
    try:
        machine.send(event_type, facts=facts, data=data)
    except TransitionNotAllowed:
        assert not isinstance(decision, Accepted)
    else:
        assert isinstance(decision, Accepted)
        assert list(machine.configuration_values) == [decision.to_phase]


@given(
    facts=facts_strategy,
    event_type=st.sampled_from(ALL_TYPES),
    data=data_strategy,
    role=st.sampled_from([None, "mentee", "mentor"]),
)
def test_an_unguarded_decision_reads_only_the_phase_and_the_pause(
    facts: LifecycleFacts, event_type: str, data: dict[str, Any], role: str | None
) -> None:
    """Where ``guarded`` says no guard reads them, facts beyond the phase and
    the pause (which the aggregate skips computing) change no decision."""
    facts = replace(facts, actor_role=role)
    bare = LifecycleFacts(facts.phase, facts.paused, actor_role=role)
    if workflows.guarded(facts.phase, event_type):
        return
    assert check(event_type, facts, data) == check(event_type, bare, data)


def test_guarded_names_the_transitions_with_guards() -> None:
    assert workflows.guarded("identification", "mentor.selected")
    assert workflows.guarded("cultivation", "advocacy.recorded")
    assert not workflows.guarded("cultivation", "meeting.held")
    assert not workflows.guarded("concluded", "meeting.held")  # not accepted at all

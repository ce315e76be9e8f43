"""Random command sequences never break the lifecycle, and replay reproduces every version.

Hypothesis drives a relationship with random commands: mostly plausible ones
(ids it has seen, event types accepted now) so that runs reach the later
phases, some wrong ones, and some junk. After every step:

- the relationship is in a state the machine allows (valid phase, paused only
  where pausing is possible, nothing accepted once concluded);
- a recorded event was accepted by the library's own engine in the same
  situation, and a refused one was refused by it too;
- a refusal changed nothing.

At the end every recorded event goes through the mapper (to_stored_event ->
to_domain_event) and the relationship rebuilt at each version equals the state
it had at that version.
"""

import copy
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from statemachine.exceptions import TransitionNotAllowed

import workflows
from domain import (
    EVENT_CLASSES,
    RECORDABLE_TYPES,
    GuardFailed,
    InvalidTransition,
    Relationship,
    ValidationFailed,
    make_mapper,
    rebuild_from_stored,
    relationship_view,
)
from domain.relationship import client_events
from domain.samples import Clock, agreement_data

MENTORS = ["mentor-1", "mentor-2", "mentee-1"]
MEETINGS = ["mt1", "mt2", "mt3"]
ITEMS = ["a1", "a2", "a3"]
CONCERNS = ["concern-1", "concern-2", "c9"]
GOALS = ["g1", "g2", "g9"]
WHEN = st.sampled_from(["2025-03-01T10:00:00Z", "2025-03-08T10:00:00+01:00"])


def plausible_data(event_type: str) -> st.SearchStrategy[Any]:
    """Data of the right shape, with ids from small pools (so references sometimes hold)."""
    strategies: dict[str, st.SearchStrategy[Any]] = {
        "reflection.recorded": st.fixed_dictionaries(
            {
                "author_role": st.sampled_from(["mentee", "mentor"]),
                "kind": st.sampled_from(["initial", "interim", "closing"]),
            },
            optional={
                "development_areas": st.lists(st.sampled_from(["grants", "teaching"]), max_size=2)
            },
        ),
        "identification.started": st.none(),
        "candidate.proposed": st.fixed_dictionaries(
            {"mentor_id": st.sampled_from(MENTORS)},
            optional={"match_score": st.floats(0, 1), "proposed_by": st.just("matching")},
        ),
        "candidate.met": st.fixed_dictionaries(
            {"mentor_id": st.sampled_from(MENTORS), "met_at": WHEN}
        ),
        "candidate.declined": st.fixed_dictionaries(
            {
                "mentor_id": st.sampled_from(MENTORS),
                "by": st.sampled_from(["mentee", "mentor"]),
                "reason_code": st.just("schedule"),
            }
        ),
        "mentor.selected": st.fixed_dictionaries(
            {"mentor_id": st.sampled_from(MENTORS), "mentor_consent": st.booleans()}
        ),
        "agreement.proposed": st.builds(
            _agreement,
            complete=st.booleans(),
            goal_ids=st.lists(st.sampled_from(GOALS), min_size=1, max_size=2),
        ),
        "agreement.signed": st.fixed_dictionaries(
            {"by": st.sampled_from(["mentee", "mentor"]), "agreement_version": st.integers(1, 3)}
        ),
        "relationship.established": st.none(),
        "meeting.scheduled": st.fixed_dictionaries(
            {"meeting_id": st.sampled_from(MEETINGS), "scheduled_for": WHEN}
        ),
        "meeting.held": st.fixed_dictionaries(
            {"held_at": WHEN},
            optional={
                "meeting_id": st.sampled_from(MEETINGS),
                "action_items": st.lists(
                    st.fixed_dictionaries(
                        {
                            "id": st.sampled_from(ITEMS),
                            "description": st.just("do"),
                            "owner": st.just("mentee"),
                        }
                    ),
                    max_size=1,
                ),
            },
        ),
        "meeting.missed": st.fixed_dictionaries(
            {"scheduled_for": WHEN}, optional={"meeting_id": st.sampled_from(MEETINGS)}
        ),
        "action_item.completed": st.fixed_dictionaries({"action_item_id": st.sampled_from(ITEMS)}),
        "goal.progressed": st.fixed_dictionaries(
            {"goal_id": st.sampled_from(GOALS), "status": st.sampled_from(["on_track", "achieved"])}
        ),
        "feedback.given": st.fixed_dictionaries(
            {"from_role": st.sampled_from(["mentee", "mentor"]), "rating": st.integers(0, 6)}
        ),
        "concern.raised": st.fixed_dictionaries(
            {"category": st.just("other"), "severity": st.sampled_from(["low", "high"])},
            optional={"concern_id": st.sampled_from(CONCERNS)},
        ),
        "concern.resolved": st.fixed_dictionaries(
            {
                "concern_id": st.sampled_from(CONCERNS),
                "resolution": st.sampled_from(["addressed", "withdrawn"]),
            }
        ),
        "advocacy.recorded": st.fixed_dictionaries(
            {"kind": st.sampled_from(["introduction", "protection", "praise"])},
            optional={"occurred_on": st.just("2025-03-03"), "description": st.just("d")},
        ),
        "risk.flagged": st.fixed_dictionaries(
            {
                "reasons": st.lists(
                    st.fixed_dictionaries(
                        {
                            "code": st.sampled_from(["phase_stalled", "open_high_concern"]),
                            "since": WHEN,
                        }
                    ),
                    min_size=1,
                    max_size=2,
                )
            }
        ),
        "risk.cleared": st.fixed_dictionaries(
            {"codes": st.lists(st.sampled_from(["phase_stalled", "open_high_concern"]), min_size=1)}
        ),
        "relationship.paused": st.fixed_dictionaries({"reason": st.just("leave")}),
        "relationship.resumed": st.none(),
        "review.started": st.fixed_dictionaries({"trigger": st.just("scheduled_review")}),
        "relationship.refined": st.fixed_dictionaries({}, optional={"reason": st.just("new aims")}),
        "relationship.concluded": st.fixed_dictionaries(
            {}, optional={"outcome": st.sampled_from(["goals_achieved", "other"])}
        ),
        "relationship.withdrawn": st.fixed_dictionaries(
            {"reason_code": st.just("moved")},
            optional={
                "safety_override": st.booleans(),
                "justification": st.sampled_from(["", "unsafe"]),
            },
        ),
    }
    return strategies[event_type]


def _agreement(complete: bool, goal_ids: list[str]) -> dict[str, Any]:
    data = agreement_data(tuple(dict.fromkeys(goal_ids)))
    if not complete:
        data["end_date"] = data["start_date"]
    return data


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


def _state(relationship: Relationship) -> dict[str, Any]:
    return copy.deepcopy({k: v for k, v in vars(relationship).items() if k != "_pending_events"})


class RelationshipLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock(start=datetime(2025, 1, 1, tzinfo=UTC), step=timedelta(minutes=7))
        self.relationship = Relationship.open({"mentee_id": "mentee-1"}, self.clock.envelope())
        self.events: list[Relationship.Event] = [
            cast(Relationship.Event, e) for e in self.relationship.pending_events
        ]
        self.states = {1: _state(self.relationship)}
        self.views = {1: relationship_view(self.relationship)}

    def _attempt(self, event_type: str, data: Any) -> None:
        relationship = self.relationship
        before = _state(relationship)
        # advocacy is the mentor's to record; everything else is posted by the mentee
        role = "mentor" if event_type == "advocacy.recorded" else "mentee"
        envelope = self.clock.envelope(f"{role}-1", role)
        facts = dataclasses.replace(relationship.facts(), actor_role=role)
        try:
            event = relationship.record(event_type, data, envelope)
        except InvalidTransition as refusal:
            assert event_type not in workflows.allowed_events(facts)
            assert refusal.allowed_events == client_events(workflows.allowed_events(facts))
            self._library_refuses(facts, event_type, data)
        except ValidationFailed as refusal:
            assert refusal.errors and all(error.path for error in refusal.errors)
        except GuardFailed as refusal:
            assert refusal.unmet
            self._library_refuses(facts, event_type, data)
        else:
            self._library_accepts(facts, event, data)
            self.events.append(event)
            self.states[relationship.version] = _state(relationship)
            self.views[relationship.version] = relationship_view(relationship)
            return
        assert _state(relationship) == before, "a refused command changes nothing"

    def _library_refuses(self, facts: workflows.LifecycleFacts, event_type: str, data: Any) -> None:
        fields = _parsed(event_type, data)
        if fields is None:
            return
        machine = workflows.machine_at(facts.phase)
        try:
            machine.send(event_type, facts=facts, data=fields)
        except TransitionNotAllowed:
            return
        raise AssertionError(f"the library accepted {event_type} in {facts.phase}")

    def _library_accepts(
        self, facts: workflows.LifecycleFacts, event: Relationship.Event, data: Any
    ) -> None:
        machine = workflows.machine_at(facts.phase)
        machine.send(event.api_type, facts=facts, data=_parsed(event.api_type, data))
        assert list(machine.configuration_values) == [event.to_phase]
        assert event.from_phase == facts.phase

    @rule(renegotiate=st.booleans())
    def take_the_next_step(self, renegotiate: bool) -> None:
        """The command that moves the relationship on, so runs reach every phase."""
        event_type, data = _next_step(self.relationship, renegotiate)
        self._attempt(event_type, data)

    @rule(choice=st.data())
    def record_something_accepted_now(self, choice: st.DataObject) -> None:
        allowed = [e for e in self.relationship.allowed_events() if e != "relationship.withdrawn"]
        if not allowed:
            return
        event_type = choice.draw(st.sampled_from(allowed))
        self._attempt(event_type, choice.draw(plausible_data(event_type)))

    @rule(choice=st.data())
    def record_any_type(self, choice: st.DataObject) -> None:
        event_type = choice.draw(st.sampled_from(RECORDABLE_TYPES))
        self._attempt(event_type, choice.draw(plausible_data(event_type)))

    @rule(event_type=st.sampled_from([*RECORDABLE_TYPES, "bogus.type"]), data=json_values)
    def record_junk(self, event_type: str, data: Any) -> None:
        self._attempt(event_type, data)

    @invariant()
    def only_states_the_machine_allows(self) -> None:
        relationship = self.relationship
        assert relationship.phase in workflows.PHASES
        if relationship.paused:
            assert relationship.phase in workflows.phases_accepting("relationship.paused")
        if relationship.phase == "concluded":
            assert relationship.allowed_events() == []
        if relationship.phase in ("establishment", "cultivation", "refinement"):
            assert relationship.mentor_id is not None
        if relationship.phase == "cultivation" and relationship.agreement is not None:
            assert {"mentee", "mentor"} <= set(relationship.agreement.signatures)
        assert relationship.version == len(self.events)

    def teardown(self) -> None:
        mapper = make_mapper(compress=True)
        stored = [mapper.to_stored_event(event) for event in self.events]
        for version, state in self.states.items():
            rebuilt = rebuild_from_stored(mapper, stored, version=version)
            assert rebuilt is not None
            assert _state(rebuilt) == state, f"version {version}"
            assert relationship_view(rebuilt) == self.views[version]


def _next_step(relationship: Relationship, renegotiate: bool) -> tuple[str, Any]:
    phase, facts = relationship.phase, relationship.facts()
    if relationship.paused:
        return "relationship.resumed", None
    if phase == "reflection":
        if facts.mentee_initial_development_areas:
            return "identification.started", None
        return "reflection.recorded", {
            "author_role": "mentee",
            "kind": "initial",
            "development_areas": ["x"],
        }
    if phase == "identification":
        if "mentor-1" not in facts.candidates_proposed or "mentor-1" in facts.candidates_declined:
            return "candidate.proposed", {"mentor_id": "mentor-1"}
        if "mentor-1" not in facts.candidates_met:
            return "candidate.met", {"mentor_id": "mentor-1", "met_at": "2025-01-02T10:00:00Z"}
        return "mentor.selected", {"mentor_id": "mentor-1", "mentor_consent": True}
    if phase == "establishment":
        agreement = facts.latest_agreement
        if (
            agreement is None
            or not agreement.proposed_in_current_establishment
            or not agreement.ends_after_start
        ):
            return "agreement.proposed", agreement_data()
        for party in ("mentee", "mentor"):
            if party not in agreement.signed_by:
                return "agreement.signed", {"by": party, "agreement_version": agreement.version}
        return "relationship.established", None
    if phase == "cultivation":
        return _next_cultivation_step(relationship)
    if phase == "refinement":
        if ("mentee", "closing") not in facts.refinement_reflections:
            return "reflection.recorded", {"author_role": "mentee", "kind": "closing"}
        if renegotiate:
            return "relationship.refined", {"reason": "again"}
        return "relationship.concluded", {"outcome": "goals_achieved"}
    return "reflection.recorded", {"author_role": "mentee", "kind": "initial"}


def _next_cultivation_step(relationship: Relationship) -> tuple[str, Any]:
    if relationship.open_action_items:
        return "action_item.completed", {
            "action_item_id": relationship.open_action_items[0].item.id
        }
    if relationship.meetings_held < 2 * relationship.establishment_round:
        item = {"id": f"item-{relationship.version}", "description": "do", "owner": "mentee"}
        return "meeting.held", {"held_at": "2025-03-01T10:00:00Z", "action_items": [item]}
    goal_ids = [goal.id for goal in relationship.goals]
    if not set(goal_ids) & set(relationship.goal_progress):
        return "goal.progressed", {"goal_id": goal_ids[0], "status": "on_track"}
    if sum(relationship.feedback_count.values()) < relationship.establishment_round:
        return "feedback.given", {"from_role": "mentor", "rating": 5}
    return "review.started", {"trigger": "term_ended"}


def _parsed(event_type: str, data: Any) -> dict[str, Any] | None:
    cls = EVENT_CLASSES.get(event_type)
    if cls is None or not isinstance(data, dict | None):
        return None
    try:
        return cls.parse(data)
    except ValidationFailed:
        return None


RelationshipLifecycle.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRelationshipLifecycle = RelationshipLifecycle.TestCase

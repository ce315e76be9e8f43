"""The lifecycle of a mentoring relationship, as one python-statemachine machine.

This class is the single source of truth for what may happen when (docs/architecture.md
section 2). It reads like the tables there:

- the six phases are its states;
- every phase change is a transition caused by one event type (the event's id
  is the API's dotted type), guarded by predicates whose names say the rule;
- every in-phase event is an internal (self) transition of the phases that
  accept it, so the diagram shows everything;
- the pause rules are the ``is_not_paused`` / ``is_paused`` conditions.

``StateMachine`` (not ``StateChart``) keeps the strict behaviour: an event that
is not accepted raises ``TransitionNotAllowed`` instead of being ignored.

Requests do not instantiate this class (that costs ~0.6 ms): ``workflows.decide``
compiles its transitions once, at import, into a lookup table and evaluates the
same guard functions. ``tests/unit`` checks that both agree.
"""

from typing import Any

from statemachine import Event, State, StateMachine

from workflows.guards import (
    agreement_ends_after_it_starts,
    agreement_has_measurable_dated_goal,
    agreement_proposed_in_this_establishment,
    agreement_signed_by_mentee,
    agreement_signed_by_mentor,
    concern_is_still_open,
    concern_was_raised,
    is_not_paused,
    is_paused,
    justification_is_given,
    mentee_closing_reflection_in_this_refinement,
    mentee_listed_initial_development_areas,
    mentor_consented,
    mentor_has_not_declined,
    mentor_was_met,
    mentor_was_proposed,
    recorded_by_the_mentor,
    reflected_in_this_refinement,
    safety_override_is_set,
)


def _event(transitions: Any, event_type: str) -> Any:
    """An event whose id and name are the API's dotted type (e.g. ``meeting.held``)."""
    return Event(transitions, id=event_type, name=event_type)


def _within(*phases: State, cond: Any = None) -> Any:
    """Internal (self) transitions: accepted in these phases, which it does not leave."""
    transitions = [
        phase.to.itself(internal=True, cond=cond)  # type: ignore[no-untyped-call]
        for phase in phases
    ]
    combined = transitions[0]
    for transition in transitions[1:]:
        combined = combined | transition
    return combined


class Lifecycle(StateMachine):
    """Reflection, identification, establishment, cultivation, refinement, concluded."""

    # --- phases --------------------------------------------------------------------
    reflection = State("Reflection", initial=True)
    identification = State("Identification")
    establishment = State("Establishment")
    cultivation = State("Cultivation")
    refinement = State("Refinement")
    concluded = State("Concluded", final=True)

    # --- phase changes: event type, from -> to, guard ------------------------------
    identification_started = _event(
        reflection.to(identification, cond=mentee_listed_initial_development_areas),
        "identification.started",
    )
    mentor_selected = _event(
        identification.to(
            establishment,
            cond=[
                mentor_was_proposed,
                mentor_was_met,
                mentor_has_not_declined,
                mentor_consented,
            ],
        ),
        "mentor.selected",
    )
    relationship_established = _event(
        establishment.to(
            cultivation,
            cond=[
                is_not_paused,
                agreement_proposed_in_this_establishment,
                agreement_signed_by_mentee,
                agreement_signed_by_mentor,
                agreement_has_measurable_dated_goal,
                agreement_ends_after_it_starts,
            ],
        ),
        "relationship.established",
    )
    review_started = _event(
        cultivation.to(refinement, cond=is_not_paused),
        "review.started",
    )
    relationship_refined = _event(
        refinement.to(establishment, cond=reflected_in_this_refinement),
        "relationship.refined",
    )
    relationship_concluded = _event(
        refinement.to(
            concluded,
            cond=mentee_closing_reflection_in_this_refinement,
        ),
        "relationship.concluded",
    )
    relationship_withdrawn = _event(
        reflection.to(concluded)
        | identification.to(concluded)
        | establishment.to(concluded)
        | cultivation.to(concluded, cond=[safety_override_is_set, justification_is_given])
        | refinement.to(concluded, cond=[safety_override_is_set, justification_is_given]),
        "relationship.withdrawn",
    )

    # --- in-phase events: internal transitions of the phases that accept them ------
    reflection_recorded = _event(
        _within(reflection, identification, establishment, cultivation, refinement),
        "reflection.recorded",
    )
    concern_raised = _event(
        _within(reflection, identification, establishment, cultivation, refinement),
        "concern.raised",
    )
    concern_resolved = _event(
        _within(
            reflection,
            identification,
            establishment,
            cultivation,
            refinement,
            cond=[concern_was_raised, concern_is_still_open],
        ),
        "concern.resolved",
    )
    advocacy_recorded = _event(
        _within(
            reflection,
            identification,
            establishment,
            cultivation,
            refinement,
            cond=recorded_by_the_mentor,
        ),
        "advocacy.recorded",
    )
    # Recorded by the service's risk worker only (clients are refused before the lifecycle).
    risk_flagged = _event(
        _within(reflection, identification, establishment, cultivation, refinement),
        "risk.flagged",
    )
    risk_cleared = _event(
        _within(reflection, identification, establishment, cultivation, refinement),
        "risk.cleared",
    )

    candidate_proposed = _event(_within(identification), "candidate.proposed")
    candidate_met = _event(_within(identification), "candidate.met")
    candidate_declined = _event(_within(identification), "candidate.declined")

    agreement_proposed = _event(_within(establishment, cond=is_not_paused), "agreement.proposed")
    agreement_signed = _event(_within(establishment, cond=is_not_paused), "agreement.signed")

    meeting_scheduled = _event(_within(cultivation, cond=is_not_paused), "meeting.scheduled")
    meeting_held = _event(
        _within(cultivation, cond=is_not_paused) | _within(refinement), "meeting.held"
    )
    meeting_missed = _event(_within(cultivation, cond=is_not_paused), "meeting.missed")
    action_item_completed = _event(
        _within(cultivation, cond=is_not_paused), "action_item.completed"
    )
    goal_progressed = _event(_within(cultivation, cond=is_not_paused), "goal.progressed")
    feedback_given = _event(
        _within(cultivation, cond=is_not_paused) | _within(refinement), "feedback.given"
    )

    # --- pausing: only in establishment and cultivation; never twice ---------------
    relationship_paused = _event(
        _within(establishment, cultivation, cond=is_not_paused), "relationship.paused"
    )
    relationship_resumed = _event(
        _within(establishment, cultivation, cond=is_paused), "relationship.resumed"
    )


PHASE_PRACTICES: dict[str, tuple[str, str]] = {
    "reflection": (
        "Self-reflect",
        "the mentee records values, work style and development areas",
    ),
    "identification": (
        "Identify mentors",
        "candidate mentors are proposed, met, declined; one is selected",
    ),
    "establishment": (
        "Establish",
        "an agreement (objectives, SMART goals, cadence, confidentiality, duration) is "
        "proposed and signed by both",
    ),
    "cultivation": (
        "Cultivate",
        "meetings with agendas and action items, goal progress, feedback",
    ),
    "refinement": (
        "Refine or conclude",
        "closing reflections; refine (renegotiate) or conclude",
    ),
    "concluded": (
        "-",
        "terminal; a new cycle is a new relationship linked to this one",
    ),
}
"""The practice of each phase (seed 004), for the workflow description."""

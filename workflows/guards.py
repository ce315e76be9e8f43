"""The guards of the lifecycle: one small predicate per rule.

Each guard is a plain function whose name says the rule, so the state machine
can use it directly as a ``cond=`` (python-statemachine injects ``facts`` and
``data`` by parameter name) and the diagram shows it. Each is registered with
two sentences: the rule as a statement (for ``GET /v1/workflow``) and what a
user must do when it is unmet (for a 422 ``guard-failed``).

There are two kinds:

- *pause conditions* only read ``paused``. They decide whether an event type is
  accepted at all (an event refused by one is a 409 ``invalid-transition``, and
  it is left out of ``allowed_events``);
- *rule guards* read the relationship's facts and the event's data. An event
  refused by one is accepted in the phase but its guard is unmet (422).

Each rule lives in one place. A rule that the event's own fields decide
(``outcome`` and an agreement's ``cadence`` are required, a mentee cannot be
proposed as their own candidate)
is validation, not a guard here: a guard that validation always pre-empts
could never fail, yet ``GET /v1/workflow`` would advertise it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from workflows.facts import EventData, LifecycleFacts, PhaseSnapshot

RuleGuard = Callable[[LifecycleFacts, EventData], bool]
PauseCondition = Callable[[PhaseSnapshot], bool]
GuardKind = Literal["pause", "rule"]

_F = TypeVar("_F", RuleGuard, PauseCondition)


@dataclass(frozen=True, slots=True)
class GuardInfo:
    """How a guard is explained to people."""

    name: str
    kind: GuardKind
    rule: str
    """The rule as a statement: what must be true."""
    unmet: str
    """What a user can do about it when it is not true."""


_REGISTRY: dict[object, GuardInfo] = {}


def _register(kind: GuardKind, rule: str, unmet: str) -> Callable[[_F], _F]:
    def decorator(function: _F) -> _F:
        _REGISTRY[function] = GuardInfo(function.__name__, kind, rule, unmet)
        return function

    return decorator


def pause_condition(rule: str, unmet: str) -> Callable[[PauseCondition], PauseCondition]:
    """Register a condition that decides acceptance from ``paused`` alone."""
    return _register("pause", rule, unmet)


def guard(rule: str, unmet: str) -> Callable[[RuleGuard], RuleGuard]:
    """Register a data-dependent guard of a transition."""
    return _register("rule", rule, unmet)


def guard_info(function: object) -> GuardInfo:
    """The registered explanation of a guard used in the machine.

    Raises ``LookupError`` for an unregistered callable, so a guard added to the
    machine without its sentences fails at import time, not in a request.
    """
    try:
        return _REGISTRY[function]
    except KeyError:
        raise LookupError(f"{function!r} is not a registered guard") from None


# --- pause conditions ---------------------------------------------------------------


@pause_condition(
    "the relationship is not paused",
    "the relationship is paused: resume it (relationship.resumed) first",
)
def is_not_paused(facts: PhaseSnapshot) -> bool:
    return not facts.paused


@pause_condition(
    "the relationship is paused",
    "the relationship is not paused",
)
def is_paused(facts: PhaseSnapshot) -> bool:
    return facts.paused


# --- reflection -> identification -----------------------------------------------


@guard(
    "the mentee recorded an 'initial' reflection with at least one development area",
    "the mentee must record an 'initial' reflection (reflection.recorded with author_role "
    "'mentee', kind 'initial') listing at least one development area before identification "
    "can start",
)
def mentee_listed_initial_development_areas(facts: LifecycleFacts, data: EventData) -> bool:
    return facts.mentee_initial_development_areas > 0


# --- identification -> establishment ----------------------------------------------


def _mentor_id(data: EventData) -> object:
    return data.get("mentor_id")


@guard(
    "the selected mentor was proposed as a candidate",
    "the selected mentor must first be proposed as a candidate (candidate.proposed)",
)
def mentor_was_proposed(facts: LifecycleFacts, data: EventData) -> bool:
    return _mentor_id(data) in facts.candidates_proposed


@guard(
    "the mentee met the selected mentor",
    "the mentee must meet the selected mentor first (candidate.met)",
)
def mentor_was_met(facts: LifecycleFacts, data: EventData) -> bool:
    return _mentor_id(data) in facts.candidates_met


@guard(
    "the selected mentor has not declined",
    "the selected mentor declined (candidate.declined): select another candidate",
)
def mentor_has_not_declined(facts: LifecycleFacts, data: EventData) -> bool:
    return _mentor_id(data) not in facts.candidates_declined


@guard(
    "the mentor consented (mentor_consent is true)",
    "the mentor must consent: send mentor_consent true once they have agreed",
)
def mentor_consented(facts: LifecycleFacts, data: EventData) -> bool:
    return data.get("mentor_consent") is True


# --- establishment -> cultivation -------------------------------------------------


@guard(
    "an agreement version was proposed in this establishment phase",
    "propose an agreement (agreement.proposed); after a refinement the relationship needs "
    "a new agreement version",
)
def agreement_proposed_in_this_establishment(facts: LifecycleFacts, data: EventData) -> bool:
    agreement = facts.latest_agreement
    return agreement is not None and agreement.proposed_in_current_establishment


@guard(
    "the mentee signed the latest agreement version",
    "the mentee must sign the latest agreement version (agreement.signed by 'mentee')",
)
def agreement_signed_by_mentee(facts: LifecycleFacts, data: EventData) -> bool:
    agreement = facts.latest_agreement
    return agreement is not None and "mentee" in agreement.signed_by


@guard(
    "the mentor signed the latest agreement version",
    "the mentor must sign the latest agreement version (agreement.signed by 'mentor')",
)
def agreement_signed_by_mentor(facts: LifecycleFacts, data: EventData) -> bool:
    agreement = facts.latest_agreement
    return agreement is not None and "mentor" in agreement.signed_by


@guard(
    "the latest agreement version has at least one goal with a measure and a target date",
    "the latest agreement version needs at least one goal with both a measure and a "
    "target_date: propose a new version",
)
def agreement_has_measurable_dated_goal(facts: LifecycleFacts, data: EventData) -> bool:
    agreement = facts.latest_agreement
    return agreement is not None and agreement.measurable_dated_goals > 0


@guard(
    "the latest agreement version ends after it starts",
    "the latest agreement version's end_date must be after its start_date: propose a new version",
)
def agreement_ends_after_it_starts(facts: LifecycleFacts, data: EventData) -> bool:
    agreement = facts.latest_agreement
    return agreement is not None and agreement.ends_after_start


# --- refinement -> establishment | concluded --------------------------------------


@guard(
    "a closing or interim reflection was recorded in this refinement",
    "record a 'closing' or 'interim' reflection (reflection.recorded) in this refinement "
    "before renegotiating",
)
def reflected_in_this_refinement(facts: LifecycleFacts, data: EventData) -> bool:
    return any(kind in ("closing", "interim") for _, kind in facts.refinement_reflections)


@guard(
    "the mentee recorded a closing reflection in this refinement",
    "the mentee must record a 'closing' reflection (reflection.recorded with author_role "
    "'mentee', kind 'closing') in this refinement before concluding",
)
def mentee_closing_reflection_in_this_refinement(facts: LifecycleFacts, data: EventData) -> bool:
    return ("mentee", "closing") in facts.refinement_reflections


# --- withdrawal once the relationship is under way --------------------------------


@guard(
    "safety_override is true",
    "withdrawing once cultivation has begun needs safety_override true: otherwise start a "
    "review (review.started) and conclude",
)
def safety_override_is_set(facts: LifecycleFacts, data: EventData) -> bool:
    return data.get("safety_override") is True


@guard(
    "a justification is given",
    "withdrawing once cultivation has begun needs a non-empty justification",
)
def justification_is_given(facts: LifecycleFacts, data: EventData) -> bool:
    justification = data.get("justification")
    return isinstance(justification, str) and bool(justification.strip())


# --- concerns ---------------------------------------------------------------------


@guard(
    "the concern was raised on this relationship",
    "concern_id must name a concern raised on this relationship (concern.raised gives each "
    "concern its concern_id)",
)
def concern_was_raised(facts: LifecycleFacts, data: EventData) -> bool:
    return data.get("concern_id") in facts.concerns_raised


@guard(
    "the concern is still open",
    "this concern was already resolved (concern.resolved): a concern is resolved once",
)
def concern_is_still_open(facts: LifecycleFacts, data: EventData) -> bool:
    concern_id = data.get("concern_id")
    return concern_id not in facts.concerns_raised or concern_id in facts.concerns_open


# --- advocacy ------------------------------------------------------------------------


@guard(
    "the mentor records it (actor role mentor)",
    "advocacy is recorded by the mentor: post it with actor.role 'mentor'",
)
def recorded_by_the_mentor(facts: LifecycleFacts, data: EventData) -> bool:
    return facts.actor_role == "mentor"

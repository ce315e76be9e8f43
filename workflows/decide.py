"""Deciding an event against the lifecycle, without building a machine per request.

At import, the transitions of :class:`~workflows.lifecycle.Lifecycle` are read
once from the class, through python-statemachine's public API (``states``,
``State.transitions``, ``Transition.events``/``target``/``cond``, ``events``),
into a table keyed by ``(phase, event type)``. A decision is then a dictionary lookup and a few
guard calls (a few microseconds) instead of instantiating the machine
(~0.6 ms). The guards are the very functions the machine holds, so there is
one definition of every rule.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from workflows.facts import PHASES, EventData, LifecycleFacts, Phase, PhaseSnapshot
from workflows.guards import GuardInfo, PauseCondition, RuleGuard, guard_info
from workflows.lifecycle import Lifecycle


@dataclass(frozen=True, slots=True)
class Route:
    """One transition of the machine: an event type taking ``source`` to ``target``."""

    event_type: str
    source: Phase
    target: Phase
    pause_conditions: tuple[PauseCondition, ...]
    guards: tuple[RuleGuard, ...]

    @property
    def changes_phase(self) -> bool:
        return self.source != self.target

    @property
    def guard_infos(self) -> tuple[GuardInfo, ...]:
        return tuple(guard_info(g) for g in self.guards)

    @property
    def pause_infos(self) -> tuple[GuardInfo, ...]:
        return tuple(guard_info(c) for c in self.pause_conditions)


@dataclass(frozen=True, slots=True)
class Accepted:
    """The event may be recorded; it takes the relationship from one phase to another."""

    event_type: str
    from_phase: Phase
    to_phase: Phase


@dataclass(frozen=True, slots=True)
class NotAccepted:
    """The event type is not accepted in this phase (or not while paused): HTTP 409."""

    event_type: str
    phase: Phase
    paused: bool
    allowed_events: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GuardUnmet:
    """The event type is accepted here but the rules of its transition are unmet: HTTP 422."""

    event_type: str
    phase: Phase
    unmet: tuple[GuardInfo, ...]

    @property
    def messages(self) -> list[str]:
        """What the user can do, one sentence per unmet rule."""
        return [info.unmet for info in self.unmet]


Decision = Accepted | NotAccepted | GuardUnmet


def _routes_of(machine: type[Any]) -> tuple[Route, ...]:
    routes: list[Route] = []
    for state in machine.states:
        for transition in state.transitions:
            pause: list[PauseCondition] = []
            rules: list[RuleGuard] = []
            for spec in transition.cond:
                if spec.expected_value is not True or not callable(spec.func):
                    raise TypeError(f"{transition}: guards must be registered callables")
                if guard_info(spec.func).kind == "pause":
                    pause.append(spec.func)
                else:
                    rules.append(spec.func)
            for event in transition.events:
                routes.append(
                    Route(
                        event_type=str(event.id),
                        source=cast(Phase, state.id),
                        target=cast(Phase, transition.target.id),
                        pause_conditions=tuple(pause),
                        guards=tuple(rules),
                    )
                )
    return tuple(routes)


ROUTES: tuple[Route, ...] = _routes_of(Lifecycle)
"""Every transition of the machine, in declaration order per phase."""


def _event_types_of(machine: type[Any]) -> tuple[str, ...]:
    # ``events`` of the machine class: its events in declaration order (typed as
    # an instance property by the library, hence ``type[Any]`` as in _routes_of).
    return tuple(str(event.id) for event in machine.events)


EVENT_TYPES: tuple[str, ...] = _event_types_of(Lifecycle)
"""Every event type the lifecycle knows, in declaration order."""

_ROUTES_BY_KEY: dict[tuple[str, str], tuple[Route, ...]] = {}
for _route in ROUTES:
    _key = (_route.source, _route.event_type)
    _ROUTES_BY_KEY[_key] = (*_ROUTES_BY_KEY.get(_key, ()), _route)


def _check_phase(phase: str) -> None:
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; expected one of {', '.join(PHASES)}")


def _is_available(route: Route, snapshot: PhaseSnapshot) -> bool:
    return all(condition(snapshot) for condition in route.pause_conditions)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    phase: Phase
    paused: bool


@cache
def _allowed(phase: Phase, paused: bool) -> tuple[str, ...]:
    _check_phase(phase)
    snapshot = _Snapshot(phase, paused)
    allowed = {
        route.event_type: None
        for route in ROUTES
        if route.source == phase and _is_available(route, snapshot)
    }
    return tuple(allowed)


def allowed_events(snapshot: PhaseSnapshot) -> list[str]:
    """Event types accepted now given the phase and ``paused`` (data-dependent guards aside)."""
    return list(_allowed(snapshot.phase, snapshot.paused))


def accepts(snapshot: PhaseSnapshot, event_type: str) -> bool:
    """Whether ``event_type`` is accepted in this phase (and pause state) at all."""
    return event_type in _allowed(snapshot.phase, snapshot.paused)


def check(event_type: str, facts: LifecycleFacts, data: EventData | None = None) -> Decision:
    """Decide an event: not accepted here, accepted but guard unmet, or accepted.

    Every guard of the transition is evaluated so that a refusal lists all the
    unmet rules at once, not just the first one.
    """
    snapshot: PhaseSnapshot = facts
    if not accepts(snapshot, event_type):
        return NotAccepted(
            event_type, facts.phase, facts.paused, _allowed(facts.phase, facts.paused)
        )
    payload: EventData = data if data is not None else {}
    first_unmet: tuple[GuardInfo, ...] = ()
    for route in _ROUTES_BY_KEY[(facts.phase, event_type)]:
        if not _is_available(route, snapshot):
            continue
        unmet = tuple(guard_info(g) for g in route.guards if not g(facts, payload))
        if not unmet:
            return Accepted(event_type, route.source, route.target)
        first_unmet = first_unmet or unmet
    return GuardUnmet(event_type, facts.phase, first_unmet)


@cache
def guarded(phase: str, event_type: str) -> bool:
    """Whether deciding ``event_type`` in ``phase`` reads more than the phase
    and the pause: whether any of its transitions has a guard. The other
    facts cost the aggregate a walk over its state, skipped when unread."""
    return any(route.guards for route in _ROUTES_BY_KEY.get((phase, event_type), ()))


def phases_accepting(event_type: str) -> list[Phase]:
    """The phases in which an event type is accepted (when not paused)."""
    return _unique(route.source for route in ROUTES if route.event_type == event_type)


def _unique(phases: Iterable[Phase]) -> list[Phase]:
    return list(dict.fromkeys(phases))


def machine_at(phase: Phase) -> Lifecycle:
    """A live machine resumed in ``phase`` (costs ~0.6 ms: for tools and tests, not requests).

    ``machine.send(event_type, facts=..., data=...)`` runs the library's own
    engine with the same guards, raising ``TransitionNotAllowed`` on refusal.
    """
    _check_phase(phase)
    return Lifecycle(start_value=phase)

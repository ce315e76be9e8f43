"""The lifecycle described for people and other programs: JSON, Mermaid, SVG.

Everything here is derived from the machine class (through the compiled
routes), so the description and the diagram cannot drift from the rules that
are enforced.
"""

from functools import cache
from importlib.util import find_spec
from typing import Any, Literal

from statemachine.contrib.diagram.extract import extract
from statemachine.contrib.diagram.model import ActionType, DiagramAction, DiagramGraph

from workflows.decide import EVENT_TYPES, ROUTES, Route, allowed_events, phases_accepting
from workflows.facts import PHASES, Snapshot
from workflows.lifecycle import PHASE_PRACTICES, Lifecycle

DiagramFormat = Literal["mermaid", "svg", "dot"]

SVG_REQUIREMENTS = "DOT needs pydot: pip install pydot"


class DiagramUnavailable(RuntimeError):
    """The requested diagram format needs software that is not installed."""


def _guard_list(route: Route) -> list[dict[str, str]]:
    return [
        {"name": info.name, "kind": info.kind, "rule": info.rule, "unmet": info.unmet}
        for info in (*route.pause_infos, *route.guard_infos)
    ]


def _transition(route: Route) -> dict[str, Any]:
    return {
        "event": route.event_type,
        "from": route.source,
        "to": route.target,
        "guards": _guard_list(route),
    }


def _phase(phase: str) -> dict[str, Any]:
    state = Lifecycle.states_map[phase]
    practice, what = PHASE_PRACTICES[phase]
    return {
        "id": phase,
        "name": state.name,
        "practice": practice,
        "description": what,
        "initial": bool(state.initial),
        "final": bool(state.final),
    }


def _pause_rules() -> dict[str, Any]:
    pausable = phases_accepting("relationship.paused")
    while_paused = {phase: allowed_events(Snapshot(phase, paused=True)) for phase in pausable}
    return {
        "pausable_phases": pausable,
        "pause_event": "relationship.paused",
        "resume_event": "relationship.resumed",
        "accepted_while_paused": sorted({e for events in while_paused.values() for e in events}),
        "accepted_while_paused_by_phase": while_paused,
        "rules": [
            "relationship.paused and relationship.resumed are accepted only in "
            + " and ".join(pausable),
            "a paused relationship cannot be paused again; resuming needs a paused one",
            "while paused, only "
            + ", ".join(sorted({e for events in while_paused.values() for e in events}))
            + " are accepted",
        ],
    }


@cache
def _describe() -> dict[str, Any]:
    in_phase = [
        {"event": event_type, "phases": phases_accepting(event_type)}
        for event_type in EVENT_TYPES
        if all(not route.changes_phase for route in ROUTES if route.event_type == event_type)
    ]
    return {
        "machine": Lifecycle.name,
        "initial_phase": Lifecycle.initial_state.id,
        "final_phases": [state.id for state in Lifecycle.final_states],
        "phases": [_phase(phase) for phase in PHASES],
        "transitions": [_transition(route) for route in ROUTES if route.changes_phase],
        "in_phase_events": in_phase,
        "in_phase_guards": [
            _transition(route)
            for route in ROUTES
            if not route.changes_phase and (route.guards or route.pause_conditions)
        ],
        "pause_rules": _pause_rules(),
        "event_types": list(EVENT_TYPES),
    }


def describe_workflow() -> dict[str, Any]:
    """The JSON body of ``GET /v1/workflow``: phases, transitions and their guards,
    in-phase events and their phases, pause rules. JSON-ready; a fresh copy each call."""
    import copy

    return copy.deepcopy(_describe())


def _graph() -> DiagramGraph:
    """The library's diagram model, with the in-phase events written into their phases.

    python-statemachine draws an internal transition only when it has an action;
    ours have none (they change state through the aggregate), so we add each as an
    internal line ``event [guards]`` inside its phase.
    """
    graph = extract(Lifecycle)
    by_id = {state.id: state for state in graph.states}
    for route in ROUTES:
        if route.changes_phase:
            continue
        names = [info.name for info in (*route.pause_infos, *route.guard_infos)]
        body = route.event_type + (f" [{', '.join(names)}]" if names else "")
        by_id[route.source].actions.append(DiagramAction(type=ActionType.INTERNAL, body=body))
    return graph


def mermaid() -> str:
    """Mermaid ``stateDiagram-v2`` text of the whole lifecycle (needs nothing installed)."""
    from statemachine.contrib.diagram.renderers.mermaid import MermaidRenderer

    return str(MermaidRenderer().render(_graph()))


def dot() -> str:
    """Graphviz DOT source (needs ``pydot``)."""
    if find_spec("pydot") is None:
        raise DiagramUnavailable(SVG_REQUIREMENTS)
    from statemachine.contrib.diagram.renderers.dot import DotRenderer

    return str(DotRenderer().render(_graph()).to_string())

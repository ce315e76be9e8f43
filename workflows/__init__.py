"""The lifecycle of a mentoring relationship: its state machine, guards and description.

Pure (no I/O) and independent of the domain: the domain describes a
relationship with :class:`LifecycleFacts` and asks :func:`check`.
"""

from workflows.decide import (
    EVENT_TYPES,
    ROUTES,
    Accepted,
    Decision,
    GuardUnmet,
    NotAccepted,
    Route,
    accepts,
    allowed_events,
    check,
    guarded,
    machine_at,
    phases_accepting,
)
from workflows.describe import (
    SVG_REQUIREMENTS,
    DiagramUnavailable,
    describe_workflow,
    mermaid,
)
from workflows.diagrams import diagram, lifecycle_svg, svg
from workflows.facts import (
    PHASES,
    AgreementFacts,
    EventData,
    LifecycleFacts,
    Phase,
    PhaseSnapshot,
    Snapshot,
)
from workflows.guards import GuardInfo, guard_info
from workflows.lifecycle import Lifecycle

__all__ = [
    "EVENT_TYPES",
    "PHASES",
    "ROUTES",
    "SVG_REQUIREMENTS",
    "Accepted",
    "AgreementFacts",
    "Decision",
    "DiagramUnavailable",
    "EventData",
    "GuardInfo",
    "GuardUnmet",
    "Lifecycle",
    "LifecycleFacts",
    "NotAccepted",
    "Phase",
    "PhaseSnapshot",
    "Route",
    "Snapshot",
    "accepts",
    "allowed_events",
    "check",
    "describe_workflow",
    "diagram",
    "guard_info",
    "guarded",
    "lifecycle_svg",
    "machine_at",
    "mermaid",
    "phases_accepting",
    "svg",
]

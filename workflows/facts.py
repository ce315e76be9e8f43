"""What the lifecycle needs to know about a relationship to decide an event.

The workflow never imports the domain: the domain describes its aggregate to
the workflow with these plain, immutable values. Keeping them flat and small
means a guard can be read (and tested) without building an aggregate, and
building them per decision costs a couple of microseconds.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

Phase = Literal[
    "reflection",
    "identification",
    "establishment",
    "cultivation",
    "refinement",
    "concluded",
]
"""The six states of the lifecycle, named after the five practices (and the end)."""

PHASES: tuple[Phase, ...] = get_args(Phase)

EventData = Mapping[str, object]
"""The validated data of the event being decided (guards may read it)."""


class PhaseSnapshot(Protocol):
    """Anything that knows its phase and whether it is paused.

    Enough to say which event types are accepted now; data-dependent guards
    need the full :class:`LifecycleFacts`.
    """

    @property
    def phase(self) -> Phase: ...

    @property
    def paused(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The minimal :class:`PhaseSnapshot`, e.g. for a relationship read from a projection."""

    phase: Phase
    paused: bool = False


@dataclass(frozen=True, slots=True)
class AgreementFacts:
    """The latest agreement version, as the establishment guard sees it."""

    version: int
    signed_by: frozenset[str]
    """Roles (``mentee``, ``mentor``) that signed this version."""
    measurable_dated_goals: int
    """Goals that have both a ``measure`` and a ``target_date``."""
    ends_after_start: bool
    proposed_in_current_establishment: bool
    """False when the relationship came back from refinement and this version
    predates it: a renegotiated relationship needs a new version."""


@dataclass(frozen=True, slots=True)
class LifecycleFacts:
    """The relationship's state as far as the lifecycle's guards are concerned."""

    phase: Phase
    paused: bool = False
    mentee_id: str = ""
    mentee_initial_development_areas: int = 0
    """Development areas the mentee listed in ``initial`` reflections."""
    candidates_proposed: frozenset[str] = frozenset()
    candidates_met: frozenset[str] = frozenset()
    candidates_declined: frozenset[str] = frozenset()
    latest_agreement: AgreementFacts | None = None
    refinement_reflections: frozenset[tuple[str, str]] = frozenset()
    """``(author_role, kind)`` of the reflections recorded since the current
    refinement began (empty outside refinement)."""
    concerns_raised: frozenset[str] = frozenset()
    """Ids of every concern raised (``concern.raised``)."""
    concerns_open: frozenset[str] = frozenset()
    """Ids of the concerns not resolved yet."""
    actor_role: str | None = None
    """The role of the actor posting the event being decided (its envelope's
    ``actor.role``; None when the request names no actor)."""

"""The fold of the phase statistics: events -> row changes (pure).

Reads metadata only (type, phases, occurred_at), asks an event that
concludes a relationship for its outcome (``concluded_outcome``): what the
aggregate decided is read from the event, never re-derived here; and reads
the ``kind`` of ``advocacy.recorded`` (counted per kind).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from domain.metadata import PAUSED, RESUMED
from projections.base import ProjectedEvent

ADVOCACY = "advocacy.recorded"
RELEVANT = frozenset({"relationship.opened", PAUSED, RESUMED, ADVOCACY})
"""Event types the fold reads besides those that change phase."""


def relevant(event: ProjectedEvent) -> bool:
    """Whether the event changes the statistics."""
    return event.type in RELEVANT or event.meta.changes_phase


@dataclass(slots=True)
class Current:
    phase: str
    paused: bool
    outcome: str | None


@dataclass(slots=True)
class Stay:
    relationship_id: UUID
    entered_position: int
    phase: str
    entered_at: datetime
    left_at: datetime | None = None


@dataclass
class BatchChanges:
    """What one batch does to the tables, collected in memory first."""

    current: dict[UUID, Current | None]
    stays: list[Stay]
    open_stay: dict[UUID, Stay]
    """The stay of this batch that is still open, per relationship."""
    close_stored: dict[UUID, datetime]
    """Relationships whose stored open stay ends in this batch, and when."""
    advocacy: list[tuple[UUID, int, str]] = field(default_factory=list)
    """``(relationship, position, kind)`` of each ``advocacy.recorded``."""

    def change_phase(self, event: ProjectedEvent, phase: str) -> None:
        rid, at = event.relationship_id, event.occurred_at
        previous = self.open_stay.get(rid)
        if previous is not None:
            previous.left_at = at
        elif event.type != "relationship.opened":
            self.close_stored.setdefault(rid, at)
        stay = Stay(rid, event.position, phase, at)
        self.stays.append(stay)
        self.open_stay[rid] = stay


def apply(changes: BatchChanges, event: ProjectedEvent) -> None:
    rid = event.relationship_id
    if event.type == "relationship.opened":
        changes.current[rid] = Current("reflection", False, None)
        changes.change_phase(event, "reflection")
        return
    current = changes.current.get(rid)
    if current is None:
        return  # never opened: nothing to count
    if event.type == ADVOCACY:
        changes.advocacy.append((rid, event.position, getattr(event.event, "kind", "other")))
    outcome = event.outcome  # the event says what outcome it concluded with
    if outcome is not None:
        current.outcome = outcome
    meta = event.meta
    current.paused = meta.paused_after(current.paused)  # the aggregate's rule
    if meta.changes_phase and meta.to_phase is not None:
        current.phase = meta.to_phase
        changes.change_phase(event, meta.to_phase)

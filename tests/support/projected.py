"""Events as a projection sees them, without a store: for folding and
rendering tests that need no database."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from uuid import uuid4

from domain import Relationship, event_metadata
from projections import ProjectedEvent

RECORDED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def projected(events: Sequence[Relationship.Event]) -> list[ProjectedEvent]:
    """The events at positions 1, 2, ... in order, recorded at RECORDED_AT."""
    return [
        ProjectedEvent(
            position=index,
            relationship_id=event.originator_id,
            version=event.originator_version,
            event_id=uuid4(),
            topic="",
            metadata=event_metadata(event),
            recorded_at=RECORDED_AT,
            chain_hash=b"",
            decode=_decoded(event),
        )
        for index, event in enumerate(events, 1)
    ]


def _decoded(event: Relationship.Event) -> Callable[[], Relationship.Event]:
    """A decoder that hands back ``event`` itself."""
    return lambda: event

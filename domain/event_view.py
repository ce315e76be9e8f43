"""One view of a recorded event, for a reader's role.

Every place that shows a recorded event (the API's event lists, the
timeline, the audit trail, ``mentorflow replay``) renders its common fields
here: its place in the log, its metadata and its data, with confidential
fields replaced for auditors. Each adds its own (the timeline its sentence,
the audit trail its chain hash) or reshapes the result for its resource.
"""

from datetime import datetime
from typing import Any
from uuid import UUID

from domain.catalog import event_data
from domain.jsonable import to_jsonable
from domain.metadata import EventMetadata
from domain.relationship import Relationship


def event_view(
    *,
    event_id: UUID,
    version: int,
    position: int,
    recorded_at: datetime,
    meta: EventMetadata,
    event: Relationship.Event | None,
    redacted: bool,
) -> dict[str, Any]:
    """``position``, ``version``, ``event_id``, ``type``, ``occurred_at``,
    ``recorded_at``, ``actor``, ``source``, ``correlation_id``,
    ``causation_id``, ``from_phase``, ``to_phase`` and, when the payload was
    decoded (``event``), its ``data``; ``redacted`` replaces confidential
    fields (the auditor's view)."""
    view: dict[str, Any] = {
        "position": position,
        "version": version,
        "event_id": str(event_id),
        "type": meta.type,
        "occurred_at": to_jsonable(meta.occurred_at),
        "recorded_at": to_jsonable(recorded_at),
        "actor": meta.actor,
        "source": meta.source,
        "correlation_id": meta.correlation_id,
        "causation_id": meta.causation_id,
        "from_phase": meta.from_phase,
        "to_phase": meta.to_phase,
    }
    if event is not None:
        view["data"] = event_data(event, redacted=redacted)
    return view

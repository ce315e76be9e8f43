"""JSON shapes of the API's resources that are not the domain's own view."""

from __future__ import annotations

from typing import Any, TypeVar

from domain import event_view, metadata_of
from projections import paging
from service.http.problems import Problem
from service.relationships.repository import RecordedEvent

T = TypeVar("T")


def recorded_event(recorded: RecordedEvent, *, redacted: bool) -> dict[str, Any]:
    """A recorded event as docs/api.md describes it: the one view of a recorded
    event (:func:`domain.event_view`) under the API's names; `redacted` hides
    confidential fields (for auditors)."""
    event = recorded.event
    meta = metadata_of(event)
    view = event_view(
        event_id=recorded.event_id,
        version=event.originator_version,
        position=recorded.position,
        recorded_at=recorded.recorded_at,
        meta=meta,
        event=event,
        redacted=redacted,
    )
    body = {
        "id": view["event_id"],
        "type": view["type"],
        "relationship_id": str(event.originator_id),
    }
    body |= {key: view[key] for key in _RECORDED_EVENT_KEYS}
    if meta.changes_phase:
        body["from_phase"] = meta.from_phase
        body["to_phase"] = meta.to_phase
    return body


_RECORDED_EVENT_KEYS = (
    "version",
    "position",
    "occurred_at",
    "recorded_at",
    "actor",
    "source",
    "correlation_id",
    "causation_id",
    "data",
)


def decode_cursor(raw: str | None, *, kind: str, maximum: int = paging.MAX_KEY) -> int | None:
    """The opaque `cursor` query parameter (made by
    :func:`projections.paging.encode_cursor` for the same ``kind`` of list);
    a forged one, or one of another list, is a validation error."""
    if not raw:
        return None
    try:
        return paging.decode_cursor(raw, kind=kind, maximum=maximum)
    except paging.InvalidQuery:
        raise Problem.invalid(
            "query.cursor",
            "unknown cursor",
            "query parameter cursor is not one this service issued",
        ) from None

"""JSON shapes of the API's resources that are not the domain's own view."""

from __future__ import annotations

from typing import Any, TypeVar

from domain import event_data, to_jsonable
from projections import paging
from service.http.problems import Problem
from service.relationships import RecordedEvent

T = TypeVar("T")


def recorded_event(recorded: RecordedEvent, *, redacted: bool) -> dict[str, Any]:
    """A recorded event as API.md describes it; `redacted` hides confidential
    fields (for auditors)."""
    event = recorded.event
    view: dict[str, Any] = {
        "id": str(recorded.event_id),
        "type": event.api_type,
        "relationship_id": str(event.originator_id),
        "version": event.originator_version,
        "position": recorded.position,
        "occurred_at": to_jsonable(event.occurred_at),
        "recorded_at": to_jsonable(recorded.recorded_at),
        "actor": to_jsonable(event.actor),
        "source": event.source,
        "correlation_id": event.correlation_id,
        "causation_id": event.causation_id,
        "data": event_data(event, redacted=redacted),
    }
    if event.changes_phase:
        view["from_phase"] = event.from_phase
        view["to_phase"] = event.to_phase
    return view


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

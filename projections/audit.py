"""The audit trail: every event of a relationship with its envelope and chain hash.

The events table is the audit trail (it is append-only and hash-chained), so
this module keeps no table: the service reads the stream from the event store
and formats each record with :func:`audit_entry`; verification recomputes the
chain in the store (``EventStore.verify_stream``).
"""

from __future__ import annotations

from typing import Any

from domain import Relationship, event_view
from projections.base import ProjectedEvent


def audit_entry(event: ProjectedEvent, *, redact: bool) -> dict[str, Any]:
    """One event as the auditor reads it: the one view of a recorded event
    (:func:`domain.event_view`) with its topic, chain hash and stored
    metadata. A payload that no longer decodes (altered in the database) is
    reported as such instead of failing the whole trail."""

    def view(decoded: Relationship.Event | None) -> dict[str, Any]:
        return event_view(
            event_id=event.event_id,
            version=event.version,
            position=event.position,
            recorded_at=event.recorded_at,
            meta=event.meta,
            event=decoded,
            redacted=redact,
        )

    decode_error: str | None = None
    try:
        body = view(event.event)
    except Exception as exc:  # any decoding failure: the payload is not what was stored
        body, decode_error = view(None), f"{type(exc).__name__}: {exc}"
    data = body.pop("data", None)
    body |= {
        "topic": event.topic,
        "chain_hash": event.chain_hash.hex(),
        "metadata": dict(event.metadata),
        "data": data,
    }
    if decode_error is not None:
        body["decode_error"] = decode_error
    return body

"""The audit trail: every event of a relationship with its envelope and chain hash.

The events table is the audit trail (it is append-only and hash-chained), so
this module keeps no table: the service reads the stream from the event store
and formats each record with :func:`audit_entry`; verification recomputes the
chain in the store (``EventStore.verify_stream``).
"""

from __future__ import annotations

from typing import Any

from domain import event_data, to_jsonable
from projections.base import ProjectedEvent

ENVELOPE = ("occurred_at", "actor", "source", "correlation_id", "causation_id")


def audit_entry(event: ProjectedEvent, *, redact: bool) -> dict[str, Any]:
    """One event as the auditor reads it. The data is decoded from the stored
    payload; a payload that no longer decodes (altered in the database) is
    reported as such instead of failing the whole trail."""
    meta = event.metadata
    body: dict[str, Any] = {
        "position": event.position,
        "version": event.version,
        "event_id": str(event.event_id),
        "type": event.type,
        "topic": event.topic,
        "recorded_at": to_jsonable(event.recorded_at),
        **{key: meta.get(key) for key in ENVELOPE},
        "from_phase": event.from_phase,
        "to_phase": event.to_phase,
        "chain_hash": event.chain_hash.hex(),
        "metadata": dict(meta),
    }
    try:
        body["data"] = event_data(event.event, redacted=redact)
    except Exception as exc:  # any decoding failure: the payload is not what was stored
        body["data"] = None
        body["decode_error"] = f"{type(exc).__name__}: {exc}"
    return body

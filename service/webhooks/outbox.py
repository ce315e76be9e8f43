"""The webhook outbox: turns recorded events into messages for subscribers.

It is a projection like the others, so its messages commit together with its
checkpoint: a committed event is never lost for a subscriber, even if a
process dies between reading the log and delivering. The dispatcher (in
``service.webhooks``) sends what this writes.

Each message is the exact CloudEvent that will be sent, built once, so every
retry carries the same body and the same ``webhook-id``. Data is thin: ids,
codes and phases, never a confidential field.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from domain import CONFIDENTIAL_FIELDS, event_data, to_jsonable
from projections.base import ProjectedEvent, Projection, relationship_events

PHASE_CHANGED = "relationship.phase_changed"
CLOUDEVENT_TYPE_PREFIX = "org.mentorflow."
MESSAGE_NAMESPACE = uuid.UUID("8f5c2b1e-4a8e-4f55-9d55-6f0b0b8f1d2a")

THIN_FIELDS = frozenset(
    {
        "mentor_id", "proposed_by", "match_score", "by", "reason_code", "mentor_consent",
        "agreement_version", "meeting_id", "scheduled_for", "held_at",
        "duration_minutes", "action_item_id", "goal_id", "status", "from_role", "rating",
        "category", "severity", "trigger", "outcome", "kind", "author_role", "met_at",
        "expected_resume", "safety_override", "occurred_on",
    }
)  # fmt: skip
"""Fields a webhook may carry: ids, codes, dates and numbers."""

assert not THIN_FIELDS & set().union(*CONFIDENTIAL_FIELDS.values()), "a confidential thin field"

RISK_TYPES = frozenset({"risk.flagged", "risk.cleared"})
"""Event types whose webhook data also holds ``program_id`` and ``codes`` (the
codes flagged, or the codes cleared), so a program can route the alert."""


def risk_codes(data: Mapping[str, Any]) -> list[str]:
    """The codes a risk event is about: those flagged, or those cleared."""
    if "reasons" in data:
        return [reason["code"] for reason in data["reasons"]]
    return list(data.get("codes", []))


_ENDPOINTS = (
    "SELECT id, event_types, created_position FROM webhook_endpoints"
    " WHERE deleted_at IS NULL AND enabled"
)
_INSERT = (
    "INSERT INTO webhook_messages (id, endpoint_id, position, relationship_id, webhook_type, body)"
    " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::uuid[], $5::text[],"
    " $6::jsonb[]) ON CONFLICT ON CONSTRAINT webhook_messages_once DO NOTHING"
)
CHANNEL_PREFIX = "mentorflow_webhooks_"
_WAKE = "SELECT pg_notify($1 || current_schema(), '')"


def webhook_channel(schema: str) -> str:
    """The channel a batch of new messages is announced on (one per schema)."""
    return CHANNEL_PREFIX + schema


def matches(patterns: Sequence[str], webhook_type: str) -> bool:
    """`*` matches everything; `relationship.*` every type with that prefix."""
    return any(
        p == webhook_type or (p.endswith("*") and webhook_type.startswith(p[:-1])) for p in patterns
    )


def webhook_types(event: ProjectedEvent) -> list[str]:
    types = [f"relationship.{event.type}"]
    if event.meta.changes_phase:
        types.insert(0, PHASE_CHANGED)
    return types


def message_id(endpoint_id: uuid.UUID, position: int, webhook_type: str) -> uuid.UUID:
    """Deterministic, so a replayed batch yields the same messages (and ids)."""
    return uuid.uuid5(MESSAGE_NAMESPACE, f"{endpoint_id}:{position}:{webhook_type}")


def thin_data(event: ProjectedEvent, webhook_type: str) -> dict[str, Any]:
    meta = event.meta  # the event's common fields, read back in one place
    if webhook_type == PHASE_CHANGED:
        return {
            "relationship_id": str(event.relationship_id),
            "from_phase": meta.from_phase,
            "to_phase": meta.to_phase,
            "event_type": meta.type,
            "version": event.version,
            "at": to_jsonable(event.occurred_at),
        }
    confidential = CONFIDENTIAL_FIELDS.get(event.type, frozenset())
    data = event_data(event.event)
    fields: dict[str, Any] = {
        key: value for key, value in data.items() if key in THIN_FIELDS - confidential
    }
    if "version" in data:  # an agreement's own version: not the stream's `version` below
        fields["agreement_version"] = data["version"]
    if event.type in RISK_TYPES:
        fields["program_id"] = data.get("program_id")
        fields["codes"] = risk_codes(data)
    return {
        "relationship_id": str(event.relationship_id),
        "event_type": meta.type,
        "version": event.version,
        "phase": meta.to_phase,
        **fields,
    }


def cloudevent(event: ProjectedEvent, webhook_type: str, message: uuid.UUID) -> dict[str, Any]:
    """The structured-mode CloudEvents 1.0 body of one message."""
    return {
        "specversion": "1.0",
        "id": wire_id(message),
        "source": f"/relationships/{event.relationship_id}",
        "type": CLOUDEVENT_TYPE_PREFIX + webhook_type,
        "subject": str(event.relationship_id),
        "time": to_jsonable(event.occurred_at),
        "datacontenttype": "application/json",
        "sequence": event.version,
        "data": thin_data(event, webhook_type),
    }


TEST_TYPE = "webhook.test"
"""The webhook type of the message `POST /v1/webhooks/{id}/test` sends."""


def test_cloudevent(
    endpoint_id: uuid.UUID, message: uuid.UUID, sent_at: datetime
) -> dict[str, Any]:
    """The CloudEvent of a test message: sent to one endpoint whatever its
    event types, about no relationship."""
    return {
        "specversion": "1.0",
        "id": wire_id(message),
        "source": f"/webhooks/{endpoint_id}",
        "type": CLOUDEVENT_TYPE_PREFIX + TEST_TYPE,
        "time": to_jsonable(sent_at),
        "datacontenttype": "application/json",
        "data": {"webhook_id": str(endpoint_id), "sent_at": to_jsonable(sent_at)},
    }


CHECKPOINT_TYPE = "checkpoint.published"
"""The webhook type of each signed checkpoint (service.verifiable.checkpoints)."""
CHECKPOINT_GROUP = uuid.uuid5(MESSAGE_NAMESPACE, "checkpoints")
"""The ordering group (`relationship_id` column) of checkpoint messages: an
endpoint receives checkpoints one after the other, in tree-size order."""


def checkpoint_cloudevent(
    message: uuid.UUID, origin: str, tree_size: int, root_hash: str, note: str, at: datetime
) -> dict[str, Any]:
    """The CloudEvent of a published checkpoint (`root_hash` in base64): every
    subscriber can keep it, and so witness the log."""
    return {
        "specversion": "1.0",
        "id": wire_id(message),
        "source": "/checkpoints",
        "type": CLOUDEVENT_TYPE_PREFIX + CHECKPOINT_TYPE,
        "subject": str(tree_size),
        "time": to_jsonable(at),
        "datacontenttype": "application/json",
        "sequence": tree_size,
        "data": {"origin": origin, "tree_size": tree_size, "root_hash": root_hash, "note": note},
    }


def wire_id(message: uuid.UUID) -> str:
    """The `webhook-id` (and CloudEvent `id`) of a message."""
    return f"msg_{message.hex}"


class WebhookOutbox(Projection):
    """One message per (endpoint, event, webhook type) the endpoint asked for.

    An endpoint receives what is recorded after it was created. Its messages
    are history, not a view: it is never rebuilt (``rebuildable`` is false; a
    rebuild would send messages again, or send now, to an endpoint enabled
    since, events recorded while it was disabled). `clear` keeps every
    message, and inserts skip what exists.
    """

    name = "webhook_outbox"
    tables = ("webhook_messages",)
    rebuildable = False

    async def handle(self, conn: asyncpg.Connection, batch: Sequence[ProjectedEvent]) -> None:
        events = relationship_events(batch)
        if not events:
            return
        endpoints = await conn.fetch(_ENDPOINTS)
        if not endpoints:
            return
        rows = list(_messages(events, endpoints))
        if rows:
            await conn.execute(_INSERT, *map(list, zip(*rows, strict=True)))
            await conn.execute(_WAKE, CHANNEL_PREFIX)

    async def clear(self, conn: asyncpg.Connection) -> None:
        """Deliberately keeps every message (see the class docstring)."""


def _messages(
    events: Sequence[ProjectedEvent], endpoints: Sequence[asyncpg.Record]
) -> Iterator[tuple[Any, ...]]:
    for event in events:
        for webhook_type in webhook_types(event):
            for endpoint in endpoints:
                if endpoint["created_position"] >= event.position:
                    continue
                if not matches(endpoint["event_types"], webhook_type):
                    continue
                message = message_id(endpoint["id"], event.position, webhook_type)
                yield (
                    message,
                    endpoint["id"],
                    event.position,
                    event.relationship_id,
                    webhook_type,
                    cloudevent(event, webhook_type, message),
                )

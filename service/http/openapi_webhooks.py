"""The parts of the OpenAPI document generated from other declarations: the
`webhooks` section (each webhook type's CloudEvent, as service.webhooks.outbox
builds it, its data from the event classes' schemas), and the hoisting of
pydantic's ``$defs`` into ``components/schemas``."""

from __future__ import annotations

import copy
from typing import Any

import workflows
from domain import CONFIDENTIAL_FIELDS, EVENT_CLASSES
from domain.catalog import data_schema, opening_schema
from service.webhooks.outbox import (
    CHECKPOINT_TYPE,
    CLOUDEVENT_TYPE_PREFIX,
    PHASE_CHANGED,
    RISK_TYPES,
    TEST_TYPE,
    THIN_FIELDS,
)

OPENED = "relationship.opened"
_TIMESTAMP = {"type": "string", "format": "date-time"}


def hoist(schema: dict[str, Any], into: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with pydantic's ``$defs`` moved into ``into`` (components/schemas)
    and every ``$ref`` rewritten to point there. A name already taken by a
    different schema is an error: the document must stay unambiguous."""
    schema = copy.deepcopy(schema)
    defs = schema.pop("$defs", {})
    rewrite_refs(schema)
    for name, definition in defs.items():
        rewrite_refs(definition)
        if name in into and into[name] != definition:
            raise ValueError(f"two different schemas named {name}")
        into[name] = definition
    return schema


def rewrite_refs(node: Any) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            node["$ref"] = "#/components/schemas/" + ref.removeprefix("#/$defs/")
        for value in node.values():
            rewrite_refs(value)
    elif isinstance(node, list):
        for value in node:
            rewrite_refs(value)


_CLOUDEVENT_REQUIRED = [
    "specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data",
]  # fmt: skip


def _cloudevent(webhook_type: str, data: dict[str, Any]) -> dict[str, Any]:
    # a test message is about no relationship: no subject, no sequence
    required = [r for r in _CLOUDEVENT_REQUIRED if webhook_type != TEST_TYPE or r != "subject"]
    return {
        "type": "object",
        "required": required,
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "description": "the webhook-id header"},
            "source": {"type": "string"},
            "type": {"const": CLOUDEVENT_TYPE_PREFIX + webhook_type},
            "subject": {"type": "string"},
            "time": _TIMESTAMP,
            "datacontenttype": {"const": "application/json"},
            "sequence": {"type": "integer"},
            "data": data,
        },
    }


_PHASE_CHANGED_REQUIRED = [
    "relationship_id", "from_phase", "to_phase", "event_type", "version", "at",
]  # fmt: skip


def _webhook_data() -> dict[str, dict[str, Any]]:
    """The ``data`` of each webhook type, as service.webhooks.outbox.thin_data builds it."""
    phase = {"type": "string", "enum": list(workflows.PHASES)}
    uuid = {"type": "string", "format": "uuid"}
    shapes: dict[str, dict[str, Any]] = {
        PHASE_CHANGED: {
            "type": "object",
            "required": _PHASE_CHANGED_REQUIRED,
            "properties": {
                "relationship_id": uuid,
                "from_phase": phase,
                "to_phase": phase,
                "event_type": {"type": "string"},
                "version": {"type": "integer"},
                "at": _TIMESTAMP,
            },
        }
    }
    # the opening event is sent too (as relationship.relationship.opened)
    # and so are the service's own events (personal_data.erased)
    sources = {
        OPENED: opening_schema(),
        **{t: data_schema(t) for t in sorted(EVENT_CLASSES) if t != OPENED},
    }
    for api_type, schema in sources.items():
        hidden = CONFIDENTIAL_FIELDS.get(api_type, frozenset())
        # the definitions these fields refer to are already components (hoisted
        # with the request bodies): only the rewritten references are kept here
        out: dict[str, Any] = {}
        fields = {
            key: hoist({**value, "$defs": schema.get("$defs", {})}, out)
            for key, value in schema.get("properties", {}).items()
            if key in THIN_FIELDS and key not in hidden
        }
        if "version" in schema.get("properties", {}):  # an agreement's own version
            fields["agreement_version"] = hoist(
                {**schema["properties"]["version"], "$defs": schema.get("$defs", {})}, out
            )
        required = ["relationship_id", "event_type", "version", "phase"]
        if api_type in RISK_TYPES:
            fields["program_id"] = {"type": ["string", "null"]}
            fields["codes"] = {"type": "array", "items": {"type": "string"}}
            required += ["program_id", "codes"]
        shapes["relationship." + api_type] = {
            "type": "object",
            "required": required,
            "properties": {
                "relationship_id": uuid,
                "event_type": {"const": api_type},
                "version": {"type": "integer"},
                "phase": phase,
                **fields,
            },
        }
    shapes[CHECKPOINT_TYPE] = {
        "type": "object",
        "required": ["origin", "tree_size", "root_hash", "note"],
        "properties": {
            "origin": {"type": "string"},
            "tree_size": {"type": "integer", "minimum": 0},
            "root_hash": {"type": "string", "contentEncoding": "base64"},
            "note": {"type": "string", "description": "the signed checkpoint (C2SP signed note)"},
        },
    }
    shapes[TEST_TYPE] = {
        "type": "object",
        "required": ["webhook_id", "sent_at"],
        "properties": {"webhook_id": uuid, "sent_at": _TIMESTAMP},
    }
    return shapes


def webhooks() -> dict[str, Any]:
    return {
        name: {
            "post": {
                "summary": f"{name} (CloudEvents 1.0, structured mode)",
                "operationId": "webhook_" + name.replace(".", "_"),
                "parameters": [
                    {"name": h, "in": "header", "required": True, "schema": {"type": "string"}}
                    for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/cloudevents+json": {"schema": _cloudevent(name, data)}
                    },
                },
                "responses": {"2XX": {"description": "received; any other answer is retried"}},
            }
        }
        for name, data in _webhook_data().items()
    }

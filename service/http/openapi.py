"""The OpenAPI 3.1 description, built from the route table and the schemas
below, so it describes exactly the routes that exist."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, get_args

import workflows
from domain import EVENT_CLASSES, RECORDABLE_TYPES
from domain.catalog import data_schema, envelope_schema, opening_schema
from domain.samples import DATA_SAMPLES
from domain.values import AdvocacyKind
from service.http.openapi_webhooks import hoist, webhooks
from service.http.problems import PROBLEM_BASE, PROBLEM_JSON, TITLES
from service.http.routing import IDEMPOTENCY_KEY, Route

COMMON_PROBLEMS = ("unavailable",)
AUTH_PROBLEMS = ("unauthorized", "forbidden")

_TIMESTAMP = {"type": "string", "format": "date-time"}
_NULLABLE_STRING = {"type": ["string", "null"]}
_ACTOR = {
    "type": ["object", "null"],
    "properties": {
        "id": {"type": "string"},
        "role": {"type": "string", "enum": ["mentee", "mentor", "program_admin", "system"]},
    },
}

_NULLABLE_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
_COUNT = {"type": "integer", "minimum": 0}
_OBJECTS = {"type": "array", "items": {"type": "object"}}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_PHASE = {"type": "string", "enum": list(workflows.PHASES)}
_AGREEMENT = {
    "type": "object",
    "required": ["signed_by", "fully_signed", "time_commitment", "deliverables"],
    "properties": {
        "signed_by": {"type": "array", "items": {"enum": ["mentee", "mentor"]}},
        "fully_signed": {"type": "boolean"},
        # generated from the declarations (the components of agreement.proposed)
        "time_commitment": {
            "anyOf": [{"$ref": "#/components/schemas/TimeCommitment"}, {"type": "null"}]
        },
        "deliverables": {"type": "array", "items": {"$ref": "#/components/schemas/Deliverable"}},
    },
}
_RELATIONSHIP_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string", "format": "uuid"},
    "version": {"type": "integer", "minimum": 1},
    "phase": _PHASE,
    "paused": {"type": "boolean"},
    "pause": {"type": ["object", "null"]},
    "allowed_events": {"type": "array", "items": {"enum": sorted(RECORDABLE_TYPES)}},
    "mentee_id": {"type": "string"},
    "mentee_name": _NULLABLE_STRING,
    "mentor_id": _NULLABLE_STRING,
    "program_id": _NULLABLE_STRING,
    "predecessor_id": {"type": ["string", "null"], "format": "uuid"},
    "opened_at": _NULLABLE_TIMESTAMP,
    "modified_at": _NULLABLE_TIMESTAMP,
    "phase_entered_at": {
        "type": "object",
        "propertyNames": {"enum": list(workflows.PHASES)},
        "additionalProperties": _TIMESTAMP,
    },
    "current_phase_entered_at": _NULLABLE_TIMESTAMP,
    "agreement": {"anyOf": [_AGREEMENT, {"type": "null"}]},
    "agreement_versions": {"type": "array", "items": _AGREEMENT},
    "goals": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["id", "status", "status_note", "status_updated_at"],
            "properties": {
                "id": {"type": "string"},
                "status": {"type": "string"},
                "status_note": _NULLABLE_STRING,
                "status_updated_at": _NULLABLE_TIMESTAMP,
            },
        },
    },
    "open_action_items": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["id", "meeting_id", "assigned_at"],
            "properties": {
                "id": {"type": "string"},
                "meeting_id": _NULLABLE_STRING,
                "assigned_at": _NULLABLE_TIMESTAMP,
            },
        },
    },
    "completed_action_items": _COUNT,
    "meetings_held": _COUNT,
    "meetings": {
        "type": "object",
        "additionalProperties": False,
        "required": ["held", "missed", "scheduled", "last_held_at"],
        "properties": {
            "held": _COUNT,
            "missed": _COUNT,
            "scheduled": _OBJECTS,
            "last_held_at": _NULLABLE_TIMESTAMP,
        },
    },
    "candidates": _OBJECTS,
    "reflections": {
        "type": "object",
        "additionalProperties": False,
        "required": ["count", "mentee_initial_development_areas", "items", "this_refinement"],
        "properties": {
            "count": _COUNT,
            "mentee_initial_development_areas": _STRINGS,
            "items": _OBJECTS,
            "this_refinement": _OBJECTS,
        },
    },
    "feedback": {
        "type": "object",
        "additionalProperties": False,
        "required": ["count", "by_role"],
        "properties": {
            "count": _COUNT,
            "by_role": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    role: {
                        "type": "object",
                        "required": ["count", "average_rating"],
                        "properties": {
                            "count": _COUNT,
                            "average_rating": {"type": ["number", "null"]},
                        },
                    }
                    for role in ("mentee", "mentor")
                },
            },
        },
    },
    "concerns": {
        "type": "object",
        "additionalProperties": False,
        "required": ["count", "high_severity", "open", "items"],
        "properties": {
            "count": _COUNT,
            "high_severity": _COUNT,
            "open": _COUNT,
            "items": _OBJECTS,
        },
    },
    "advocacy": {
        "type": "object",
        "additionalProperties": False,
        "required": ["count", "by_kind"],
        "description": "advocacy.recorded: how many, per kind",
        "properties": {
            "count": _COUNT,
            "by_kind": {
                "type": "object",
                "propertyNames": {"enum": list(get_args(AdvocacyKind))},
                "additionalProperties": _COUNT,
            },
        },
    },
    "review_trigger": _NULLABLE_STRING,
    "outcome": _NULLABLE_STRING,
    "outcome_summary": _NULLABLE_STRING,
}
RISK_REASONS: dict[str, Any] = {
    "type": "array",
    "description": "why it is at risk now (GET of the current relationship, and list items)",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["code", "since", "detail", "evidence"],
        "properties": {
            "code": {"type": "string"},
            "since": {"type": "string", "format": "date-time"},
            "detail": {"type": "string"},
            "evidence": {
                "type": "array",
                "description": "positions of the events that make it true",
                "items": {"type": "integer"},
            },
        },
    },
}
_RELATIONSHIP: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": sorted(_RELATIONSHIP_PROPERTIES),
    "properties": {**_RELATIONSHIP_PROPERTIES, "risk_reasons": RISK_REASONS},
    "description": "domain.view.relationship_view",
}

RECORDED_EVENT_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string", "format": "uuid"},
    "type": {"type": "string", "enum": sorted(EVENT_CLASSES)},
    "relationship_id": {"type": "string", "format": "uuid"},
    "version": {"type": "integer"},
    "position": {"type": "integer"},
    "occurred_at": _TIMESTAMP,
    "recorded_at": _TIMESTAMP,
    "actor": _ACTOR,
    "source": _NULLABLE_STRING,
    "correlation_id": _NULLABLE_STRING,
    "causation_id": _NULLABLE_STRING,
    "data": {"type": "object"},
    "from_phase": {"type": "string"},
    "to_phase": {"type": "string"},
}
"""A recorded event as every view shows it (domain.event_view); timeline and audit
entries add their own members to these."""
RECORDED_EVENT_REQUIRED = ["id", "type", "relationship_id", "version", "position", "data"]


def page_of(item: str, **extra: Any) -> dict[str, Any]:
    """A page of a list: ``items`` of one component and the cursor to the next page."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["items", "next_cursor", *extra],
        "properties": {
            "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
            "next_cursor": {"type": ["string", "null"]},
            **extra,
        },
    }


SCHEMAS: dict[str, dict[str, Any]] = {
    "Any": {},
    "Status": {
        "type": "object",
        "additionalProperties": False,
        "required": ["status"],
        "properties": {"status": {"const": "ok"}},
    },
    "Readiness": {
        "type": "object",
        "additionalProperties": False,
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["ready", "degraded"]},
            "failing": {
                "type": "array",
                "description": "degraded: the projections stuck at an event",
                "items": {
                    "type": "object",
                    "required": ["projection", "position", "error", "since"],
                    "properties": {
                        "projection": {"type": "string"},
                        "position": {"type": "integer"},
                        "error": {"type": "string"},
                        "since": _TIMESTAMP,
                    },
                },
            },
        },
    },
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "enum": sorted(PROBLEM_BASE + name for name in TITLES)},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "request_id": {"type": "string"},
            "event_type": {"type": "string", "description": "invalid-transition, guard-failed"},
            "unmet_guards": {
                "type": "array",
                "items": {"type": "string"},
                "description": "guard-failed: the unmet guards' names",
            },
            "required_roles": {
                "type": "array",
                "items": {"type": "string"},
                "description": "forbidden: the roles that may",
            },
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["path", "message"],
                    "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
                },
                "description": "validation-error: one entry per wrong field",
            },
            "current_phase": {"type": "string"},
            "paused": {"type": "boolean"},
            "allowed_events": {"type": "array", "items": {"type": "string"}},
            "unmet": {"type": "array", "items": {"type": "string"}},
            "current_version": {"type": ["integer", "null"]},
        },
    },
    "Relationship": _RELATIONSHIP,
    "RelationshipCreated": {
        **_RELATIONSHIP,
        "required": [*_RELATIONSHIP["required"], "position"],
        "properties": {
            **_RELATIONSHIP["properties"],
            "position": {
                "type": "integer",
                "description": "the opening event's place in the global log",
            },
        },
    },
    "RecordedEvent": {
        "type": "object",
        "additionalProperties": False,
        "required": RECORDED_EVENT_REQUIRED,
        "properties": RECORDED_EVENT_PROPERTIES,
    },
    "EventPage": page_of("RecordedEvent"),
    "FeedPage": page_of("RecordedEvent", next_after={"type": "integer"}),
    "Workflow": {"type": "object"},
    "TokenCreate": {
        "type": "object",
        "required": ["role", "name"],
        "additionalProperties": False,
        "properties": {
            "role": {"type": "string", "enum": ["writer", "auditor", "admin"]},
            "name": {"type": "string", "pattern": "^[a-z0-9._-]{1,64}$"},
            "program_ids": {
                "type": ["array", "null"],
                "items": {"type": "string", "minLength": 1, "maxLength": 200},
                "minItems": 1,
                "maxItems": 100,
                "description": "limit the token to these programs (not for admin tokens)",
            },
        },
    },
    "TokenCreated": {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "name", "role", "program_ids", "created_at", "token"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "name": {"type": "string"},
            "role": {"type": "string"},
            "program_ids": {"type": ["array", "null"], "items": {"type": "string"}},
            "created_at": {"type": "string", "format": "date-time"},
            "token": {
                "type": ["string", "null"],
                "description": "shown only here; null in an Idempotency-Key replay"
                " when no MENTORFLOW_CIPHER_KEY is set (secrets are never kept in clear)",
            },
        },
    },
    "Token": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "id",
            "name",
            "role",
            "program_ids",
            "created_at",
            "last_used_at",
            "revoked_at",
        ],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "name": {"type": "string"},
            "role": {"type": "string"},
            "program_ids": {"type": ["array", "null"], "items": {"type": "string"}},
            "created_at": {"type": "string", "format": "date-time"},
            "last_used_at": {"type": ["string", "null"], "format": "date-time"},
            "revoked_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
    "TokenPage": page_of("Token"),
}


def build_openapi(
    routes: Iterable[Route], extra_schemas: dict[str, Any] | None = None
) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    schemas: dict[str, Any] = {**SCHEMAS, **(extra_schemas or {})}
    schemas.update(_generated_schemas(schemas))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Mentorflow",
            "version": "1.0.0",
            "description": "Event-sourced lifecycle of mentoring relationships: post lifecycle "
            "events, read state and history at any version, audit, subscribe to webhooks.",
        },
        "paths": paths,
        "webhooks": webhooks(),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "parameters": [_parameter(p) for p in _parameters(route)],
        "responses": _responses(route),
    }
    if route.roles is not None:
        operation["security"] = [{"bearer": []}]
        operation["x-roles"] = sorted(route.roles)
    else:
        operation["security"] = []
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(route.body)}},
        }
    return operation


def _parameters(route: Route) -> tuple[Any, ...]:
    return (*route.params, IDEMPOTENCY_KEY) if route.idempotent else route.params


def _parameter(param: Any) -> dict[str, Any]:
    return {
        "name": param.name,
        "in": param.where,
        "required": param.required or param.where == "path",
        "description": param.description,
        "schema": param.schema,
    }


def _responses(route: Route) -> dict[str, Any]:
    success: dict[str, Any] = {"description": route.summary}
    schema = _ref(route.ok_schema) if route.ok_schema else {"type": "string"}
    success["content"] = {
        media: {"schema": schema} for media in (route.ok_content, *route.alt_contents)
    }
    if route.ok_headers:
        success["headers"] = {h: {"schema": {"type": "string"}} for h in route.ok_headers}
    responses: dict[str, Any] = {str(route.ok_status): success}
    problems = [*route.errors, *COMMON_PROBLEMS]
    if route.idempotent:  # a bad key is a 400, a reused one a 422
        problems += [p for p in ("malformed-request", "idempotency-conflict") if p not in problems]
    if route.roles is not None:
        problems += list(AUTH_PROBLEMS)
    by_status: dict[int, list[str]] = {}
    for name in problems:
        by_status.setdefault(TITLES[name][0], []).append(name)
    for status, names in sorted(by_status.items()):
        responses[str(status)] = {
            "description": " or ".join(PROBLEM_BASE + n for n in names),
            "content": {PROBLEM_JSON: {"schema": _ref("Problem")}},
        }
    return responses


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


# --- Generated from the declarations the service validates requests with ---------------


ERASED_TYPE = "personal_data.erased"


def _component_name(api_type: str) -> str:
    """``meeting.held`` -> ``MeetingHeld``."""
    return "".join(part.capitalize() for part in api_type.replace("_", ".").split("."))


def _generated_schemas(existing: dict[str, Any]) -> dict[str, Any]:
    """The request bodies of the two writes, from the event classes: one
    component per event type (its ``data`` and an example), the ``EventPost``
    union discriminated by ``type``, and ``RelationshipCreate``."""
    out: dict[str, Any] = {}
    envelope = hoist(envelope_schema(), out)
    envelope_properties = envelope.get("properties", {})
    mapping: dict[str, str] = {}
    for api_type in sorted(RECORDABLE_TYPES):
        name = "Data" + _component_name(api_type)
        out[name] = hoist(data_schema(api_type), out)
        post = "Post" + _component_name(api_type)
        out[post] = {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": {"type": "string", "const": api_type},
                "data": _ref(name),
                **envelope_properties,
            },
            "additionalProperties": False,
            "example": {"type": api_type, "data": DATA_SAMPLES[api_type]},
        }
        mapping[api_type] = f"#/components/schemas/{post}"
    out["EventPost"] = {
        "oneOf": [{"$ref": ref} for ref in mapping.values()],
        "discriminator": {"propertyName": "type", "mapping": mapping},
    }
    out["ErasureRequest"] = hoist(data_schema(ERASED_TYPE), out) | {"title": "ErasureRequest"}
    out["ErasureRequest"]["example"] = {"reason": "erasure request #1234 (GDPR art. 17)"}
    out["RelationshipCreate"] = hoist(opening_schema(), out) | {"title": "RelationshipCreate"}
    out["RelationshipCreate"]["example"] = {
        "mentee_id": "mentee-1",
        "program_id": "program-1",
        "actor": {"id": "mentee-1", "role": "mentee"},
    }
    for name in out:
        if name in existing:
            raise ValueError(f"generated schema {name} clashes with a declared one")
    return out

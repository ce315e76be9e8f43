"""The OpenAPI 3.1 description, built from the route table and the schemas
below, so it describes exactly the routes that exist."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import workflows
from domain import RECORDABLE_TYPES
from service.http.problems import PROBLEM_BASE, PROBLEM_JSON, TITLES
from service.http.routing import Route

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

SCHEMAS: dict[str, dict[str, Any]] = {
    "Any": {},
    "Status": {"type": "object", "properties": {"status": {"type": "string"}}},
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
                },
            },
            "current_phase": {"type": "string"},
            "paused": {"type": "boolean"},
            "allowed_events": {"type": "array", "items": {"type": "string"}},
            "unmet": {"type": "array", "items": {"type": "string"}},
            "current_version": {"type": ["integer", "null"]},
        },
    },
    "RelationshipCreate": {
        "type": "object",
        "required": ["mentee_id"],
        "properties": {
            "mentee_id": {"type": "string", "minLength": 1},
            "program_id": {"type": "string"},
            "mentee_name": {"type": "string"},
            "predecessor_id": {"type": "string", "format": "uuid"},
            "actor": _ACTOR,
            "occurred_at": _TIMESTAMP,
            "correlation_id": {"type": "string"},
            "causation_id": {"type": "string"},
        },
    },
    "Relationship": {
        "type": "object",
        "required": ["id", "phase", "paused", "version", "mentee_id", "allowed_events"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "phase": {"type": "string", "enum": list(workflows.PHASES)},
            "paused": {"type": "boolean"},
            "version": {"type": "integer"},
            "mentee_id": {"type": "string"},
            "mentor_id": _NULLABLE_STRING,
            "program_id": _NULLABLE_STRING,
            "opened_at": {"type": ["string", "null"]},
            "phase_entered_at": {"type": "object"},
            "agreement": {"type": ["object", "null"]},
            "goals": {"type": "array"},
            "open_action_items": {"type": "array"},
            "meetings_held": {"type": "integer"},
            "outcome": {"type": ["string", "null"]},
            "allowed_events": {"type": "array", "items": {"type": "string"}},
        },
    },
    "RelationshipCreated": {
        "allOf": [
            {"$ref": "#/components/schemas/Relationship"},
            {
                "type": "object",
                "required": ["position"],
                "properties": {
                    "position": {
                        "type": "integer",
                        "description": "the opening event's place in the global log",
                    }
                },
            },
        ],
    },
    "EventPost": {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"type": "string", "enum": sorted(RECORDABLE_TYPES)},
            "data": {"type": "object"},
            "occurred_at": _TIMESTAMP,
            "actor": _ACTOR,
            "correlation_id": {"type": "string"},
            "causation_id": {"type": "string"},
        },
        "additionalProperties": False,
    },
    "RecordedEvent": {
        "type": "object",
        "required": ["id", "type", "relationship_id", "version", "position", "data"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "type": {"type": "string"},
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
        },
    },
    "EventPage": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/RecordedEvent"}},
            "next_cursor": _NULLABLE_STRING,
        },
    },
    "FeedPage": {
        "type": "object",
        "required": ["items", "next_cursor", "next_after"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/RecordedEvent"}},
            "next_cursor": _NULLABLE_STRING,
            "next_after": {"type": "integer"},
        },
    },
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
        "required": ["id", "name", "role", "program_ids", "created_at", "token"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "name": {"type": "string"},
            "role": {"type": "string"},
            "program_ids": {"type": ["array", "null"], "items": {"type": "string"}},
            "created_at": {"type": "string", "format": "date-time"},
            "token": {"type": "string"},
        },
    },
    "Token": {
        "type": "object",
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
    "TokenPage": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Token"}},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
}


def build_openapi(
    routes: Iterable[Route], extra_schemas: dict[str, Any] | None = None
) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Mentorflow",
            "version": "1.0.0",
            "description": "Event-sourced lifecycle of mentoring relationships: post lifecycle "
            "events, read state and history at any version, audit, subscribe to webhooks.",
        },
        "paths": paths,
        "components": {
            "schemas": {**SCHEMAS, **(extra_schemas or {})},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "parameters": [_parameter(p) for p in route.params],
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

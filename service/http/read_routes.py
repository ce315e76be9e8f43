"""Read models over HTTP: the relationship list, timeline, audit trail and its
verification, and phase statistics.

Read models trail the log by a few milliseconds; a client that wants to read
its own write passes the `position` it got back as `?min_position=`.
"""

from __future__ import annotations

from aiohttp import web

from projections import InvalidQuery
from service.http.checkpoint_routes import CHECKPOINT_STATUS
from service.http.context import principal, services
from service.http.json_text import json_response
from service.http.openapi import RECORDED_EVENT_PROPERTIES, RISK_REASONS, page_of
from service.http.problems import Problem
from service.http.requests import MAX_INTEGER, path_text, path_uuid, query_int, query_text
from service.http.routing import READ, Param, Route
from workflows import PHASES


def _invalid(exc: InvalidQuery) -> Problem:
    return Problem.invalid(f"query.{exc.path}", exc.message, str(exc))


def _at_risk(request: web.Request) -> bool | None:
    raw = request.query.get("at_risk")
    if raw is None or raw == "":
        return None
    if raw not in ("true", "false"):
        raise _invalid(InvalidQuery("at_risk", "must be true or false"))
    return raw == "true"


def _phase(request: web.Request) -> str | None:
    phase = request.query.get("phase") or None
    if phase is not None and phase not in PHASES:
        raise _invalid(InvalidQuery("phase", f"must be one of {', '.join(PHASES)}"))
    return phase


async def _min_position(request: web.Request) -> int | None:
    """A position to wait for; one past the end of the log can never be
    reached (every acknowledged position is already committed), so it is refused."""
    position = query_int(request, "min_position", low=0)
    if position is not None and position > await services(request).store.max_position():
        raise _invalid(InvalidQuery("min_position", "is beyond the end of the global log"))
    return position


async def list_relationships(request: web.Request) -> web.Response:
    models = services(request).read_models
    try:
        body = await models.list_relationships(
            phase=_phase(request),
            mentee_id=query_text(request, "mentee_id"),
            mentor_id=query_text(request, "mentor_id"),
            program_id=query_text(request, "program_id"),
            program_ids=principal(request).program_ids,
            at_risk=_at_risk(request),
            limit=query_int(request, "limit", low=1, high=500),
            cursor=query_text(request, "cursor"),
            min_position=await _min_position(request),
        )
    except InvalidQuery as exc:
        raise _invalid(exc) from exc
    return json_response(body)


async def timeline(request: web.Request) -> web.Response:
    s = services(request)
    relationship_id = path_uuid(request, "id", "relationship")
    try:
        body = await s.read_models.timeline(
            relationship_id,
            redact=principal(request).role == "auditor",
            limit=query_int(request, "limit", low=1, high=500),
            cursor=query_text(request, "cursor"),
            min_position=await _min_position(request),
        )
    except InvalidQuery as exc:
        raise _invalid(exc) from exc
    if body is None:
        if await s.store.stream_version(relationship_id) is None:
            raise Problem("not-found", f"no relationship {relationship_id}")
        body = {"relationship_id": str(relationship_id), "items": [], "next_cursor": None}
    return json_response(body)


async def audit(request: web.Request) -> web.Response:
    relationship_id = path_uuid(request, "id", "relationship")
    try:
        body = await services(request).read_models.audit(
            relationship_id,
            redact=principal(request).role == "auditor",
            limit=query_int(request, "limit", low=1, high=500),
            cursor=query_text(request, "cursor"),
        )
    except InvalidQuery as exc:
        raise _invalid(exc) from exc
    if body is None:
        raise Problem("not-found", f"no relationship {relationship_id}")
    return json_response(body)


async def verify_audit(request: web.Request) -> web.Response:
    relationship_id = path_uuid(request, "id", "relationship")
    s = services(request)
    check = await s.read_models.verify(relationship_id)
    if check is None:
        raise Problem("not-found", f"no relationship {relationship_id}")
    # the signed checkpoint, checked with the service's key (kept outside the database)
    inclusion = await s.evidence.inclusion(relationship_id, s.checkpoints.signing_key().public_key)
    return json_response(check.to_dict() | {"checkpoint": inclusion})


async def phase_stats(request: web.Request) -> web.Response:
    body = await services(request).read_models.phase_stats(
        min_position=await _min_position(request), program_ids=principal(request).program_ids
    )
    return json_response(body)


async def mentee_network(request: web.Request) -> web.Response:
    mentee_id = path_text(request, "mentee_id", "mentee")
    body = await services(request).read_models.mentee_network(
        mentee_id,
        program_ids=principal(request).program_ids,
        min_position=await _min_position(request),
    )
    if body is None:  # none at all, or none this token may see
        raise Problem("not-found", f"no relationship of mentee {mentee_id}")
    return json_response(body)


ID = Param("id", "path", {"type": "string", "format": "uuid"}, "relationship id", required=True)
LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500})
CURSOR = Param("cursor", "query", {"type": "string"})
MIN_POSITION = Param(
    "min_position",
    "query",
    {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER},
    "wait (up to 5 s) until this global position is projected: read your own writes",
)
_TEXT = {"type": "string"}

ROUTES = [
    Route("GET", "/v1/relationships", list_relationships, READ,
          "List relationships, with at-risk flags", "relationships", ok_schema="SummaryPage",
          errors=("validation-error",),
          params=(Param("phase", "query", {"type": "string", "enum": list(PHASES)}),
                  Param("mentee_id", "query", _TEXT), Param("mentor_id", "query", _TEXT),
                  Param("program_id", "query", _TEXT),
                  Param("at_risk", "query", {"type": "string", "enum": ["true", "false"]}),
                  LIMIT, CURSOR, MIN_POSITION), program_scoped=True),
    Route("GET", "/v1/relationships/{id}/timeline", timeline, READ,
          "Read a relationship's timeline", "audit", ok_schema="TimelinePage",
          errors=("not-found", "validation-error"), params=(ID, LIMIT, CURSOR, MIN_POSITION)),
    Route("GET", "/v1/relationships/{id}/audit", audit, READ,
          "Read a relationship's audit trail", "audit", ok_schema="AuditPage",
          errors=("not-found", "validation-error"), params=(ID, LIMIT, CURSOR)),
    Route("GET", "/v1/relationships/{id}/audit/verify", verify_audit, READ,
          "Verify a relationship's hash chain", "audit", ok_schema="Verification",
          errors=("not-found",), params=(ID,)),
    Route("GET", "/v1/mentees/{mentee_id}", mentee_network, READ,
          "Read a mentee's mentoring network", "relationships", ok_schema="MenteeNetwork",
          errors=("not-found", "validation-error"),
          params=(Param("mentee_id", "path", {"type": "string", "minLength": 1, "maxLength": 200},
                        "the mentee's id", required=True), MIN_POSITION),
          program_scoped=True),
    Route("GET", "/v1/stats/phases", phase_stats, READ, "Read phase statistics", "statistics",
          ok_schema="PhaseStats", errors=("validation-error",), params=(MIN_POSITION,),
          program_scoped=True),
]  # fmt: skip

_NULLABLE_TEXT = {"type": ["string", "null"]}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_SUMMARY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "version", "phase", "paused", "mentee_id", "at_risk", "risk_reasons"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "version": {"type": "integer", "minimum": 1},
        "phase": {"type": "string", "enum": list(PHASES)},
        "paused": {"type": "boolean"},
        "mentee_id": {"type": "string"},
        "mentee_name": _NULLABLE_TEXT,
        "mentor_id": _NULLABLE_TEXT,
        "program_id": _NULLABLE_TEXT,
        "predecessor_id": {"type": ["string", "null"], "format": "uuid"},
        "opened_at": _NULLABLE_TIME,
        "phase_entered_at": _NULLABLE_TIME,
        "last_event_at": _NULLABLE_TIME,
        "cadence": _NULLABLE_TEXT,
        "last_meeting_at": _NULLABLE_TIME,
        "meetings_held": {"type": "integer", "minimum": 0},
        "open_action_items": {"type": "integer", "minimum": 0},
        "outcome": _NULLABLE_TEXT,
        "at_risk": {"type": "boolean"},
        "risk_flags": {"type": "object", "additionalProperties": {"type": "boolean"}},
        "risk_reasons": RISK_REASONS,
        "risk_recorded": {
            "type": "array",
            "description": "the codes the service last recorded (risk.flagged / risk.cleared)",
            "items": {"type": "string"},
        },
    },
}
_ENTRY_PROPERTIES = {
    "event_id": {"type": "string", "format": "uuid"},
    **{k: v for k, v in RECORDED_EVENT_PROPERTIES.items() if k not in ("id", "relationship_id")},
}
"""A recorded event as the per-relationship histories show it (domain.event_view):
named by ``event_id``, the relationship being the page's."""
_ENTRY_REQUIRED = ["event_id", "type", "version", "position"]
_TIMELINE_ENTRY = {
    "type": "object",
    "additionalProperties": False,
    "required": [*_ENTRY_REQUIRED, "data", "summary", "redacted"],
    "properties": {
        **_ENTRY_PROPERTIES,
        "summary": {"type": "string", "description": "the event as a sentence"},
        "redacted": {
            "type": "array",
            "items": {"type": "string"},
            "description": "the fields hidden from this role",
        },
    },
}
_AUDIT_ENTRY = {
    "type": "object",
    "additionalProperties": False,
    "required": [*_ENTRY_REQUIRED, "data", "topic", "chain_hash", "metadata"],
    "properties": {
        **_ENTRY_PROPERTIES,
        "data": {"type": ["object", "null"]},
        "topic": {"type": "string", "description": "the stored event class"},
        "chain_hash": {"type": "string", "description": "hex SHA-256 of the stream's chain"},
        "metadata": {"type": "object", "description": "the stored envelope"},
        "decode_error": {"type": "string", "description": "the stored payload does not decode"},
    },
}

_UUID = {"type": "string", "format": "uuid"}
_MENTEE_NETWORK = {
    "type": "object",
    "additionalProperties": False,
    "required": ["mentee_id", "relationships", "mentors", "current", "cycles"],
    "description": "projections.mentee_network.network",
    "properties": {
        "mentee_id": {"type": "string"},
        "relationships": {
            "type": "array",
            "description": "in the order they were opened",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": [
                    "id", "phase", "paused", "mentor_id", "program_id", "opened_at", "outcome",
                    "predecessor_id", "successors",
                ],
                "properties": {
                    "id": _UUID,
                    "phase": {"type": "string", "enum": list(PHASES)},
                    "paused": {"type": "boolean"},
                    "mentor_id": _NULLABLE_TEXT,
                    "program_id": _NULLABLE_TEXT,
                    "opened_at": {"type": "string", "format": "date-time"},
                    "outcome": _NULLABLE_TEXT,
                    "predecessor_id": {"type": ["string", "null"], "format": "uuid"},
                    "successors": {
                        "type": "array",
                        "items": _UUID,
                        "description": "relationships opened to continue this one",
                    },
                },
            },
        },
        "mentors": {
            "type": "array",
            "items": {"type": "string"},
            "description": "every mentor, in the order first selected",
        },
        "current": {
            "type": "integer",
            "minimum": 0,
            "description": "relationships not concluded",
        },
        "cycles": {
            "type": "array",
            "description": "chains of relationships linked by predecessor_id, each in order",
            "items": {"type": "array", "items": _UUID},
        },
    },
}  # fmt: skip

SCHEMAS = {
    "MenteeNetwork": _MENTEE_NETWORK,
    "Summary": _SUMMARY,
    "SummaryPage": page_of("Summary"),
    "TimelineEntry": _TIMELINE_ENTRY,
    "TimelinePage": page_of("TimelineEntry", relationship_id={"type": "string"}),
    "AuditEntry": _AUDIT_ENTRY,
    "AuditPage": page_of("AuditEntry", relationship_id={"type": "string"}),
    "Verification": {
        "type": "object",
        "required": ["valid", "checked", "first_invalid_version"],
        "properties": {
            "valid": {"type": "boolean"},
            "checked": {"type": "integer"},
            "first_invalid_version": {"type": ["integer", "null"]},
            "checkpoint": CHECKPOINT_STATUS,
        },
    },
    "PhaseStats": {"type": "object"},
}

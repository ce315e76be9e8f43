"""Relationships and their events: open, read (at any version or time), post
lifecycle events, history, and the global feed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from domain import (
    ENVELOPE_KEYS,
    EVENT_BODY_KEYS,
    FieldError,
    Relationship,
    ValidationFailed,
    parse_envelope,
    relationship_view,
)
from projections.paging import one_page
from service.http.context import principal, services
from service.http.idempotency import idempotency_scope
from service.http.json_text import json_response
from service.http.problems import Problem
from service.http.requests import (
    MAX_INTEGER,
    if_match,
    json_object,
    limit,
    path_uuid,
    query_datetime,
    query_int,
)
from service.http.routing import ADMIN, READ, WRITE, Param, Route, url_of
from service.http.views import decode_cursor, recorded_event
from service.relationships.application import Caller
from service.store.records import StoredRecord


def _now() -> datetime:
    return datetime.now(UTC)


def _etag(version: int) -> str:
    return f'"{version}"'


def _relationship_response(relationship: Relationship) -> web.Response:
    return json_response(
        relationship_view(relationship), headers={"ETag": _etag(relationship.version)}
    )


def _redacted(request: web.Request) -> bool:
    return principal(request).role == "auditor"


# --- relationships ----------------------------------------------------------------


async def create_relationship(request: web.Request) -> web.Response:
    s, who = services(request), principal(request)
    body, _ = await json_object(request)
    envelope = parse_envelope(body, source=who.name, now=_now())
    data = {key: value for key, value in body.items() if key not in ENVELOPE_KEYS}

    opened = await s.application.open_relationship(
        data, envelope, caller=Caller(who.program_ids), idempotency=idempotency_scope(request)
    )
    relationship = opened.relationship
    return json_response(
        {**relationship_view(relationship), "position": opened.position},
        status=201,
        headers={
            "ETag": _etag(relationship.version),
            "Location": url_of(request, get_relationship, id=str(relationship.id)),
        },
    )


async def get_relationship(request: web.Request) -> web.Response:
    s = services(request)
    version, as_of = query_int(request, "version", low=1), query_datetime(request, "as_of")
    relationship = await s.application.load(
        path_uuid(request, "id", "relationship"), version=version, as_of=as_of
    )
    if version is not None or as_of is not None:
        return _relationship_response(relationship)
    reasons = await s.read_models.risk_reasons(relationship.id)  # now, as the rules see it
    return json_response(
        {**relationship_view(relationship), "risk_reasons": reasons},
        headers={"ETag": _etag(relationship.version)},
    )


# --- events -------------------------------------------------------------------------


async def post_event(request: web.Request) -> web.Response:
    s, who = services(request), principal(request)
    relationship_id = path_uuid(request, "id", "relationship")
    body, _ = await json_object(request)
    expected = if_match(request)
    event_type, data = _event_parts(body)
    envelope = parse_envelope(body, source=who.name, now=_now())

    saved = await s.application.post_event(
        relationship_id,
        event_type,
        data,
        envelope,
        expected_version=expected,
        idempotency=idempotency_scope(request),
    )
    recorded = saved.events[-1]
    return json_response(
        recorded_event(recorded, redacted=False),
        status=201,
        headers={
            "ETag": _etag(recorded.event.originator_version),
            "Location": url_of(
                request,
                list_relationship_events,
                {"from_version": str(recorded.event.originator_version)},
                id=str(relationship_id),
            ),
        },
    )


async def erase_personal_data(request: web.Request) -> web.Response:
    """Crypto-shred the relationship's personal data (docs/erasure.md)."""
    s, who = services(request), principal(request)
    relationship_id = path_uuid(request, "id", "relationship")
    body, _ = await json_object(request)
    envelope = parse_envelope({}, source=who.name, now=_now())
    recorded = await s.application.erase(
        relationship_id, body, envelope, idempotency=idempotency_scope(request)
    )
    return json_response(
        recorded_event(recorded, redacted=False),
        status=201,
        headers={"ETag": _etag(recorded.event.originator_version)},
    )


def _event_parts(body: dict[str, Any]) -> tuple[str, Any]:
    errors = [
        FieldError(
            key,
            "unknown member; an event body has type, data, occurred_at, actor,"
            " correlation_id and causation_id",
        )
        for key in body
        if key not in EVENT_BODY_KEYS
    ]
    event_type = body.get("type")
    if not isinstance(event_type, str):
        errors.append(FieldError("type", "required: the event type, such as meeting.held"))
    data = body.get("data", {})
    if data is not None and not isinstance(data, dict):
        errors.append(FieldError("data", "must be an object"))
    if errors:
        raise ValidationFailed(errors)
    assert isinstance(event_type, str)
    return event_type, data


async def list_relationship_events(request: web.Request) -> web.Response:
    s = services(request)
    relationship_id = path_uuid(request, "id", "relationship")
    from_version = query_int(request, "from_version", default=1, low=1)
    after_cursor = decode_cursor(request.query.get("cursor"), kind="relationship_events")
    start = max(from_version or 1, (after_cursor or 0) + 1)
    size = limit(request)
    fetched = await s.store.read_stream(
        relationship_id, from_version=start, to_version=start + size
    )
    if not fetched and await s.store.stream_version(relationship_id) is None:
        raise Problem("not-found", f"no relationship {relationship_id}")
    records, cursor = one_page(fetched, size, kind="relationship_events", key=_version)
    redacted = _redacted(request)
    items = [recorded_event(s.repository.decode(r), redacted=redacted) for r in records]
    return json_response({"items": items, "next_cursor": cursor})


async def global_feed(request: web.Request) -> web.Response:
    s = services(request)
    after = query_int(request, "after", default=0, low=0) or 0
    after = max(after, decode_cursor(request.query.get("cursor"), kind="events") or 0)
    size = limit(request)
    programs = principal(request).program_ids
    if programs is None:
        fetched = await s.store.read_log(after, size + 1)
    else:
        fetched = await s.store.read_log_of_programs(after, size + 1, sorted(programs))
    records, cursor = one_page(fetched, size, kind="events", key=_position)
    redacted = _redacted(request)
    items = [recorded_event(s.repository.decode(r), redacted=redacted) for r in records]
    last = records[-1].position if records else after
    return json_response({"items": items, "next_cursor": cursor, "next_after": last})


def _version(record: StoredRecord) -> int:
    return record.version


def _position(record: StoredRecord) -> int:
    return record.position


ID = Param("id", "path", {"type": "string", "format": "uuid"}, "relationship id", required=True)
IF_MATCH = Param(
    "If-Match", "header", {"type": "string"}, 'the version the event applies to, e.g. "3"'
)
LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50})
CURSOR = Param("cursor", "query", {"type": "string"}, "next_cursor of the previous page")
BODY_ERRORS = ("malformed-request", "payload-too-large", "unsupported-media-type")

ROUTES = [
    Route(
        "POST",
        "/v1/relationships",
        create_relationship,
        WRITE,
        "Open a relationship",
        "relationships",
        ok_status=201,
        ok_schema="RelationshipCreated",
        body="RelationshipCreate",
        errors=(*BODY_ERRORS, "validation-error"),
        ok_headers=("ETag", "Location"),
        program_scoped=True,
    ),
    Route(
        "GET",
        "/v1/relationships/{id}",
        get_relationship,
        READ,
        "Read a relationship, now or at a version or moment",
        "relationships",
        ok_schema="Relationship",
        errors=("not-found", "validation-error"),
        params=(
            ID,
            Param(
                "version",
                "query",
                {"type": "integer", "minimum": 1, "maximum": MAX_INTEGER},
                "state at this version",
            ),
            Param("as_of", "query", {"type": "string", "format": "date-time"}, "state then"),
        ),
        ok_headers=("ETag",),
    ),
    Route(
        "POST",
        "/v1/relationships/{id}/events",
        post_event,
        WRITE,
        "Post a lifecycle event",
        "events",
        ok_status=201,
        ok_schema="RecordedEvent",
        body="EventPost",
        errors=(
            *BODY_ERRORS,
            "not-found",
            "invalid-transition",
            "version-conflict",
            "validation-error",
            "guard-failed",
        ),
        params=(ID, IF_MATCH),
        ok_headers=("ETag", "Location"),
    ),
    Route(
        "POST",
        "/v1/relationships/{id}/erasure",
        erase_personal_data,
        ADMIN,
        "Erase a relationship's personal data (crypto-shredding)",
        "erasure",
        ok_status=201,
        ok_schema="RecordedEvent",
        body="ErasureRequest",
        errors=(*BODY_ERRORS, "not-found", "validation-error", "erasure-unavailable"),
        params=(ID,),
        ok_headers=("ETag",),
    ),
    Route(
        "GET",
        "/v1/relationships/{id}/events",
        list_relationship_events,
        READ,
        "Read a relationship's history",
        "events",
        ok_schema="EventPage",
        errors=("not-found", "validation-error"),
        params=(
            ID,
            Param(
                "from_version", "query", {"type": "integer", "minimum": 1, "maximum": MAX_INTEGER}
            ),
            LIMIT,
            CURSOR,
        ),
    ),
    Route(
        "GET",
        "/v1/events",
        global_feed,
        READ,
        "Read the global feed in commit order",
        "events",
        ok_schema="FeedPage",
        errors=("validation-error",),
        params=(
            Param(
                "after",
                "query",
                {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER},
                "a position",
            ),
            LIMIT,
            CURSOR,
        ),
        program_scoped=True,
    ),
]

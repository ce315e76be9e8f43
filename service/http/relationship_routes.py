"""Relationships and their events: open, read (at any version or time), post
lifecycle events, history, and the global feed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from aiohttp import web

from domain import ENVELOPE_KEYS, FieldError, Relationship, ValidationFailed, parse_envelope
from service.http.context import Services, principal, services
from service.http.idempotency import IdempotencyScope, idempotent
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
from service.http.routing import READ, WRITE, Param, Route
from service.http.tokens import Principal
from service.http.views import decode_cursor, one_page, recorded_event
from service.relationships import Saved
from service.store.errors import VersionConflict
from service.store.records import StoredRecord

EVENT_BODY_KEYS = frozenset({"type", "data"}) | ENVELOPE_KEYS
DECISION_ATTEMPTS = 20


def _now() -> datetime:
    return datetime.now(UTC)


def _etag(version: int) -> str:
    return f'"{version}"'


def _relationship_response(relationship: Relationship) -> web.Response:
    return web.json_response(relationship.to_dict(), headers={"ETag": _etag(relationship.version)})


def _redacted(request: web.Request) -> bool:
    return principal(request).role == "auditor"


def _store_key(scope: IdempotencyScope | None) -> dict[str, Any]:
    if scope is None:
        return {}
    return {"idempotency_key": scope.store_key, "fingerprint": scope.fingerprint}


# --- relationships ----------------------------------------------------------------


async def create_relationship(request: web.Request) -> web.Response:
    s, who = services(request), principal(request)
    body, raw = await json_object(request)
    envelope = parse_envelope(body, source=who.name, now=_now())
    data = {key: value for key, value in body.items() if key not in ENVELOPE_KEYS}

    async def handle(scope: IdempotencyScope | None) -> web.Response:
        relationship = Relationship.open(data, envelope)
        if not who.sees(relationship.program_id):
            raise Problem(
                "forbidden",
                "this token may open relationships only in programs "
                + ", ".join(sorted(who.program_ids or ())),
            )
        if relationship.predecessor_id is not None:
            await _check_predecessor(s, who, relationship.predecessor_id)
        saved = await s.repository.save(relationship, **_store_key(scope))
        _count(s, saved)
        opened = saved.events[0]
        if saved.replayed:
            reloaded = await s.repository.load(opened.event.originator_id, version=1)
            assert reloaded is not None
            relationship = reloaded
        # The position of the opening event, for ?min_position= (read your write).
        return web.json_response(
            {**relationship.to_dict(), "position": opened.position},
            status=201,
            headers={
                "ETag": _etag(relationship.version),
                "Location": f"/v1/relationships/{relationship.id}",
            },
        )

    return await idempotent(request, s.responses, who, raw, handle)


async def _check_predecessor(s: Services, who: Principal, predecessor_id: UUID) -> None:
    predecessor = await s.repository.load(predecessor_id)
    if predecessor is not None and not who.sees(predecessor.program_id):
        predecessor = None  # another program's relationship does not exist for this token
    if predecessor is None or predecessor.phase != "concluded":
        state = "does not exist" if predecessor is None else f"is in {predecessor.phase}"
        raise ValidationFailed(
            [
                FieldError(
                    "predecessor_id",
                    f"a new cycle must follow a concluded relationship; {predecessor_id} {state}",
                )
            ]
        )


async def get_relationship(request: web.Request) -> web.Response:
    s = services(request)
    relationship_id = path_uuid(request, "id", "relationship")
    version = query_int(request, "version", low=1)
    as_of = query_datetime(request, "as_of")
    if version is None and as_of is None:
        relationship = await s.repository.load_latest(relationship_id)
    else:
        relationship = await s.repository.load(relationship_id, version=version, as_of=as_of)
    if relationship is None:
        raise Problem("not-found", _not_found_detail(relationship_id, version, as_of))
    if version is not None and relationship.version < version:
        raise Problem(
            "not-found",
            f"relationship {relationship_id} has no version {version}"
            f" (it is at {relationship.version})",
        )
    return _relationship_response(relationship)


def _not_found_detail(relationship_id: UUID, version: int | None, as_of: datetime | None) -> str:
    if as_of is not None:
        return f"relationship {relationship_id} did not exist at {as_of.isoformat()}"
    return f"no relationship {relationship_id}"


# --- events -------------------------------------------------------------------------


async def post_event(request: web.Request) -> web.Response:
    s, who = services(request), principal(request)
    relationship_id = path_uuid(request, "id", "relationship")
    body, raw = await json_object(request)
    expected = if_match(request)
    event_type, data = _event_parts(body)
    envelope = parse_envelope(body, source=who.name, now=_now())

    async def handle(scope: IdempotencyScope | None) -> web.Response:
        async with s.locks.hold(relationship_id):
            saved = await _decide_and_save(
                s, relationship_id, expected, scope, event_type, data, envelope
            )
        _count(s, saved)
        recorded = saved.events[-1]
        return web.json_response(
            recorded_event(recorded, redacted=False),
            status=201,
            headers={
                "ETag": _etag(recorded.event.originator_version),
                "Location": f"/v1/relationships/{relationship_id}/events"
                f"?from_version={recorded.event.originator_version}",
            },
        )

    return await idempotent(request, s.responses, who, raw, handle)


async def _decide_and_save(
    s: Services,
    relationship_id: UUID,
    expected: int | None,
    scope: IdempotencyScope | None,
    event_type: str,
    data: Any,
    envelope: Any,
) -> Saved:
    """Load, decide, save; when another process wrote first and the client did
    not pin a version, decide again against the state the event applies to."""
    repository = s.repository
    for _ in range(DECISION_ATTEMPTS):
        relationship = await repository.load_for_update(relationship_id)
        if relationship is None:
            raise Problem("not-found", f"no relationship {relationship_id}")
        if expected is not None and relationship.version != expected:
            repository.forget(relationship_id)  # memory may be behind another process
            relationship = await repository.load_for_update(relationship_id)
            assert relationship is not None
            if relationship.version != expected:
                raise _version_conflict(expected, relationship.version)
        relationship.record(event_type, data, envelope)
        try:
            return await repository.save(relationship, **_store_key(scope))
        except VersionConflict as conflict:
            if expected is not None:
                raise _version_conflict(expected, conflict.current_version) from conflict
    raise Problem(
        "unavailable",
        "the relationship is changing too fast to record this event; retry",
        headers={"Retry-After": "1"},
    )


def _version_conflict(expected: int, current: int | None) -> Problem:
    return Problem(
        "version-conflict",
        f'If-Match "{expected}" does not match the current version {current}',
        current_version=current,
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


def _count(s: Services, saved: Saved) -> None:
    if not saved.replayed:
        for recorded in saved.events:
            s.metrics.appends.labels(recorded.event.api_type).inc()


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
    return web.json_response({"items": items, "next_cursor": cursor})


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
    return web.json_response({"items": items, "next_cursor": cursor, "next_after": last})


def _version(record: StoredRecord) -> int:
    return record.version


def _position(record: StoredRecord) -> int:
    return record.position


ID = Param("id", "path", {"type": "string", "format": "uuid"}, "relationship id", required=True)
IF_MATCH = Param(
    "If-Match", "header", {"type": "string"}, 'the version the event applies to, e.g. "3"'
)
IDEMPOTENCY_KEY = Param(
    "Idempotency-Key",
    "header",
    {"type": "string", "minLength": 1, "maxLength": 255},
    "replays the first response for the same key and body",
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
        errors=(*BODY_ERRORS, "validation-error", "idempotency-conflict"),
        params=(IDEMPOTENCY_KEY,),
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
            "idempotency-conflict",
        ),
        params=(ID, IF_MATCH, IDEMPOTENCY_KEY),
        ok_headers=("ETag", "Location"),
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

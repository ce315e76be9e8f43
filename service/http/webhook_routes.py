"""Webhook subscriptions over HTTP (admins only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from aiohttp import web

from domain import EVENT_CLASSES
from projections.paging import one_page
from service.http.context import services
from service.http.json_text import json_response
from service.http.openapi import page_of
from service.http.problems import Problem
from service.http.requests import json_object, limit, path_uuid
from service.http.routing import ADMIN, Param, Route, url_of
from service.http.views import decode_cursor
from service.webhooks import endpoints
from service.webhooks.outbox import CHECKPOINT_TYPE, PHASE_CHANGED, wire_id
from service.webhooks.ssrf import UnsafeUrl, check_url

WEBHOOK_TYPES = frozenset({PHASE_CHANGED, CHECKPOINT_TYPE}) | {
    f"relationship.{t}" for t in EVENT_CLASSES
}
MAX_DESCRIPTION = 500


async def _valid_url(request: web.Request, value: Any) -> str:
    if not isinstance(value, str):
        raise Problem.invalid("url", "required: the http(s) URL to deliver to")
    try:
        await check_url(value, allow_private=services(request).settings.webhook_allow_private)
    except UnsafeUrl as exc:
        raise Problem.invalid("url", str(exc)) from exc
    return value


def _valid_types(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or len(value) > 100:
        raise Problem.invalid("event_types", "must be a non-empty list of webhook types")
    for index, pattern in enumerate(value):
        if not isinstance(pattern, str) or not _known_pattern(pattern):
            raise Problem.invalid(
                f"event_types[{index}]",
                "must be a webhook type such as relationship.phase_changed or"
                " relationship.meeting.held, or a prefix ending in * such as relationship.*",
            )
    return list(value)


def _known_pattern(pattern: str) -> bool:
    if pattern.endswith("*"):
        return any(t.startswith(pattern[:-1]) for t in WEBHOOK_TYPES)
    return pattern in WEBHOOK_TYPES


def _valid_description(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise Problem.invalid(
            "description", f"must be text of at most {MAX_DESCRIPTION} characters"
        )
    return value


def _refuse_unknown(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Problem(
            "validation-error",
            f"unknown members: {', '.join(unknown)}",
            errors=[{"path": k, "message": "unknown member"} for k in unknown],
        )


async def create_webhook(request: web.Request) -> web.Response:
    body, _ = await json_object(request)
    _refuse_unknown(body, {"url", "event_types", "description"})
    types = _valid_types(body.get("event_types", ["*"]))
    description = _valid_description(body.get("description"))
    url = await _valid_url(request, body.get("url"))  # last: it resolves the name
    s = services(request)
    view, secret = await endpoints.create(s.store, url, types, description, sealer=s.sealer)
    return json_response(
        {**view, "secret": secret},
        status=201,
        headers={"Location": url_of(request, get_webhook, id=str(view["id"]))},
    )


async def list_webhooks(request: web.Request) -> web.Response:
    page = limit(request)
    after = decode_cursor(request.query.get("cursor"), kind="webhooks", maximum=2**128 - 1)
    cursor_id = None if after is None else UUID(int=after)
    rows = await endpoints.list_page(services(request).store, cursor_id, page + 1)
    items, next_cursor = one_page(rows, page, kind="webhooks", key=lambda i: UUID(i["id"]).int)
    return json_response({"items": items, "next_cursor": next_cursor})


async def _existing(request: web.Request) -> tuple[UUID, dict[str, Any]]:
    endpoint_id = path_uuid(request, "id", "webhook")
    view = await endpoints.get(services(request).store, endpoint_id)
    if view is None:
        raise Problem("not-found", f"no webhook {endpoint_id}")
    return endpoint_id, view


async def get_webhook(request: web.Request) -> web.Response:
    _, view = await _existing(request)
    return json_response(view)


async def patch_webhook(request: web.Request) -> web.Response:
    endpoint_id, _ = await _existing(request)
    body, _ = await json_object(request)
    _refuse_unknown(body, {"url", "event_types", "description", "enabled"})
    enabled = body.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise Problem.invalid("enabled", "must be true or false")
    view = await endpoints.update(
        services(request).store,
        endpoint_id,
        url=await _valid_url(request, body["url"]) if "url" in body else None,
        event_types=_valid_types(body["event_types"]) if "event_types" in body else None,
        description=_valid_description(body.get("description")),
        enabled=enabled,
    )
    if view is None:
        raise Problem("not-found", f"no webhook {endpoint_id}")
    return json_response(view)


async def delete_webhook(request: web.Request) -> web.Response:
    endpoint_id = path_uuid(request, "id", "webhook")
    if not await endpoints.delete(services(request).store, endpoint_id):
        raise Problem("not-found", f"no webhook {endpoint_id}")
    return web.Response(status=204)


async def rotate_webhook_secret(request: web.Request) -> web.Response:
    endpoint_id = path_uuid(request, "id", "webhook")
    s = services(request)
    rotated = await endpoints.rotate_secret(s.store, endpoint_id, sealer=s.sealer)
    if rotated is None:
        raise Problem("not-found", f"no webhook {endpoint_id}")
    secret, expires = rotated
    return json_response({"secret": secret, "previous_secret_expires_at": expires.isoformat()})


async def list_deliveries(request: web.Request) -> web.Response:
    endpoint_id, _ = await _existing(request)
    page = limit(request)
    before = decode_cursor(request.query.get("cursor"), kind="deliveries")
    rows = await endpoints.attempts(services(request).store, endpoint_id, before, page + 1)
    items, next_cursor = one_page(rows, page, kind="deliveries", key=lambda i: int(i["id"]))
    return json_response({"items": items, "next_cursor": next_cursor})


async def retry_delivery(request: web.Request) -> web.Response:
    endpoint_id, _ = await _existing(request)
    delivery_id = path_uuid(request, "delivery_id", "delivery")
    if not await endpoints.retry(services(request).store, endpoint_id, delivery_id):
        raise Problem("not-found", f"no delivery {delivery_id} for webhook {endpoint_id}")
    _wake_dispatcher(request)
    return json_response({"delivery_id": str(delivery_id), "state": "pending"}, status=202)


async def recover_deliveries(request: web.Request) -> web.Response:
    endpoint_id, _ = await _existing(request)
    body, _ = await json_object(request)
    _refuse_unknown(body, {"since"})
    raw = body.get("since")
    try:
        since = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        since = None
    if since is None or since.tzinfo is None:
        raise Problem.invalid("since", "required: an ISO 8601 date-time with a time zone")
    requeued = await endpoints.recover(services(request).store, endpoint_id, since)
    _wake_dispatcher(request)
    return json_response({"requeued": requeued}, status=202)


async def test_webhook(request: web.Request) -> web.Response:
    endpoint_id = path_uuid(request, "id", "webhook")
    message = await endpoints.send_test(services(request).store, endpoint_id)
    if message is None:
        raise Problem("not-found", f"no webhook {endpoint_id}")
    _wake_dispatcher(request)
    return json_response(
        {"delivery_id": str(message), "webhook_id": wire_id(message), "state": "pending"},
        status=202,
    )


def _wake_dispatcher(request: web.Request) -> None:
    services(request).dispatcher.wake()


WEBHOOK_ID = Param("id", "path", {"type": "string", "format": "uuid"}, "webhook id", True)
DELIVERY_ID = Param("delivery_id", "path", {"type": "string", "format": "uuid"}, "", True)
PAGING = (
    Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500}),
    Param("cursor", "query", {"type": "string"}),
)
BODY_ERRORS = (
    "malformed-request",
    "payload-too-large",
    "unsupported-media-type",
    "validation-error",
)

ROUTES = [
    Route("POST", "/v1/webhooks", create_webhook, ADMIN, "Subscribe a webhook endpoint",
          "webhooks", ok_status=201, ok_schema="WebhookCreated", body="WebhookCreate",
          errors=BODY_ERRORS, ok_headers=("Location",), secrets=("secret",)),
    Route("GET", "/v1/webhooks", list_webhooks, ADMIN, "List webhook endpoints", "webhooks",
          ok_schema="WebhookPage", errors=("validation-error",), params=PAGING),
    Route("GET", "/v1/webhooks/{id}", get_webhook, ADMIN, "Read a webhook endpoint",
          "webhooks", ok_schema="Webhook", errors=("not-found",), params=(WEBHOOK_ID,)),
    Route("PATCH", "/v1/webhooks/{id}", patch_webhook, ADMIN, "Change a webhook endpoint",
          "webhooks", ok_schema="Webhook", body="WebhookPatch",
          errors=("not-found", *BODY_ERRORS), params=(WEBHOOK_ID,)),
    Route("DELETE", "/v1/webhooks/{id}", delete_webhook, ADMIN, "Delete a webhook endpoint",
          "webhooks", ok_status=204, ok_content="text/plain", errors=("not-found",),
          params=(WEBHOOK_ID,)),
    Route("POST", "/v1/webhooks/{id}/rotate-secret", rotate_webhook_secret, ADMIN,
          "Rotate a webhook endpoint's secret", "webhooks", ok_schema="SecretRotated",
          errors=("not-found",), params=(WEBHOOK_ID,), secrets=("secret",)),
    Route("POST", "/v1/webhooks/{id}/test", test_webhook, ADMIN,
          "Send a webhook.test message to an endpoint now, whatever its event types",
          "webhooks", ok_status=202, ok_schema="WebhookTestQueued", errors=("not-found",),
          params=(WEBHOOK_ID,)),
    Route("GET", "/v1/webhooks/{id}/deliveries", list_deliveries, ADMIN,
          "Read a webhook endpoint's delivery log", "webhooks", ok_schema="DeliveryPage",
          errors=("not-found", "validation-error"), params=(WEBHOOK_ID, *PAGING)),
    Route("POST", "/v1/webhooks/{id}/deliveries/{delivery_id}/retry", retry_delivery, ADMIN,
          "Send one delivery again", "webhooks", ok_status=202, ok_schema="Any",
          errors=("not-found",), params=(WEBHOOK_ID, DELIVERY_ID)),
    Route("POST", "/v1/webhooks/{id}/recover", recover_deliveries, ADMIN,
          "Send again every delivery that failed since a time", "webhooks", ok_status=202,
          ok_schema="Any", body="WebhookRecover", errors=("not-found", *BODY_ERRORS),
          params=(WEBHOOK_ID,)),
]  # fmt: skip

_WHEN = {"type": ["string", "null"], "format": "date-time"}
_SECRET = {
    "type": ["string", "null"],
    "pattern": "^whsec_",
    "description": "shown only here; null in an Idempotency-Key replay when no"
    " MENTORFLOW_CIPHER_KEY is set (secrets are never kept in clear)",
}
_WEBHOOK: dict[str, Any] = {
    "id": {"type": "string", "format": "uuid"},
    "url": {"type": "string", "format": "uri"},
    "event_types": {"type": "array", "items": {"type": "string"}},
    "description": {"type": ["string", "null"]},
    "enabled": {"type": "boolean"},
    "disabled_reason": {"type": ["string", "null"]},
    "previous_secret_expires_at": _WHEN,
    "failing_since": _WHEN,
    "created_at": _WHEN,
    "updated_at": _WHEN,
}
"""An endpoint as the API shows it (never its secrets): endpoints.endpoint_view."""

SCHEMAS: dict[str, dict[str, Any]] = {
    "WebhookCreate": {
        "type": "object",
        "required": ["url"],
        "properties": {
            "url": {"type": "string", "format": "uri"},
            "event_types": {"type": "array", "items": {"type": "string"}},
            "description": {"type": "string"},
        },
        "additionalProperties": False,
    },
    "WebhookPatch": {
        "type": "object",
        "properties": {
            "url": {"type": "string", "format": "uri"},
            "event_types": {"type": "array", "items": {"type": "string"}},
            "description": {"type": "string"},
            "enabled": {"type": "boolean"},
        },
        "additionalProperties": False,
    },
    "WebhookRecover": {
        "type": "object",
        "required": ["since"],
        "properties": {"since": {"type": "string", "format": "date-time"}},
    },
    "Webhook": {
        "type": "object",
        "additionalProperties": False,
        "required": list(_WEBHOOK),
        "properties": _WEBHOOK,
    },
    "WebhookCreated": {
        "type": "object",
        "additionalProperties": False,
        "required": [*_WEBHOOK, "secret"],
        "properties": {**_WEBHOOK, "secret": _SECRET},
    },
    "WebhookPage": page_of("Webhook"),
    "SecretRotated": {
        "type": "object",
        "required": ["secret", "previous_secret_expires_at"],
        "properties": {
            "secret": _SECRET,
            "previous_secret_expires_at": {"type": "string"},
        },
    },
    "WebhookTestQueued": {
        "type": "object",
        "required": ["delivery_id", "webhook_id", "state"],
        "properties": {
            "delivery_id": {"type": "string", "format": "uuid"},
            "webhook_id": {"type": "string"},
            "state": {"const": "pending"},
        },
    },
    "Delivery": {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "delivery_id", "webhook_id", "attempt", "state", "webhook_type"],
        "properties": {
            "id": {"type": "integer", "description": "the attempt"},
            "delivery_id": {"type": "string", "format": "uuid", "description": "the message"},
            "webhook_id": {"type": "string", "description": "the webhook-id header sent"},
            "attempt": {"type": "integer", "minimum": 1},
            "attempted_at": {"type": ["string", "null"], "format": "date-time"},
            "status_code": {"type": ["integer", "null"]},
            "latency_ms": {"type": ["number", "null"]},
            "error": {"type": ["string", "null"]},
            "next_retry_at": {"type": ["string", "null"], "format": "date-time"},
            "webhook_type": {"type": "string"},
            "position": {"type": ["integer", "null"]},
            "relationship_id": {"type": ["string", "null"], "format": "uuid"},
            "state": {"type": "string"},
        },
    },
    "DeliveryPage": page_of("Delivery"),
}

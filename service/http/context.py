"""What every handler may use, kept on the application under one key."""

from __future__ import annotations

from aiohttp import web

from service.access.tokens import Principal
from service.composition.components import Components

SERVICES = web.AppKey("services", Components)
REQUEST_ID = web.RequestKey("request_id", str)
"""The request's id (supplied in X-Request-Id, or made): on its response and log lines."""
PRINCIPAL = web.RequestKey("principal", Principal)
"""Who sent the request, once authenticated (routes without roles have none)."""


def services(request: web.Request) -> Components:
    """The process's components (service.composition)."""
    return request.app[SERVICES]


def principal(request: web.Request) -> Principal:
    value = request.get(PRINCIPAL)
    assert isinstance(value, Principal), "route without authentication"
    return value

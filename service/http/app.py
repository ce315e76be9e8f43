"""The aiohttp application: routes, middlewares and the services they use."""

from __future__ import annotations

from aiohttp import web

from service.codec import mapper_for
from service.http import ops_routes, relationship_routes
from service.http.context import SERVICES, Services
from service.http.metrics import Metrics
from service.http.middleware import authenticate, problems, request_context
from service.http.openapi import build_openapi
from service.http.requests import MAX_BODY
from service.http.routing import Route, register
from service.http.tokens import TokenRegistry
from service.relationships import RelationshipRepository
from service.settings import Settings
from service.store.eventstore import EventStore


def all_routes() -> list[Route]:
    return [*ops_routes.ROUTES, *relationship_routes.ROUTES]


def create_app(settings: Settings, store: EventStore) -> web.Application:
    # aiohttp's own limit sits just above ours so our check answers with a problem
    app = web.Application(
        client_max_size=MAX_BODY + 1024,
        middlewares=[request_context, problems, authenticate],
    )
    app[SERVICES] = Services(
        settings=settings,
        store=store,
        repository=RelationshipRepository(store, mapper_for(settings)),
        tokens=TokenRegistry(store, settings.admin_token),
        metrics=Metrics(),
    )
    routes = all_routes()
    register(app, routes)
    app[ops_routes.OPENAPI] = build_openapi(routes)
    return app

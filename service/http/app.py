"""The aiohttp application: routes and middlewares over the process's
components (service.composition), and the background workers that start and
stop with it (aiohttp's cleanup_ctx)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from service.composition.components import Components, build
from service.http import (
    checkpoint_routes,
    ops_routes,
    proof_routes,
    read_routes,
    relationship_routes,
    webhook_routes,
)
from service.http.context import SERVICES
from service.http.idempotency import RESPONSES, ResponseKeeper, idempotent_posts
from service.http.middleware import (
    authenticate,
    declared_query,
    problems,
    request_context,
    utf8_headers,
)
from service.http.openapi import build_openapi
from service.http.requests import MAX_BODY, STOPPING
from service.http.routing import Route, register
from service.pages.routes import add_pages
from service.platform.settings import Settings
from service.store.eventstore import EventStore


def all_routes() -> list[Route]:
    return [
        *ops_routes.ROUTES,
        *relationship_routes.ROUTES,
        *read_routes.ROUTES,
        *webhook_routes.ROUTES,
        *proof_routes.ROUTES,
        *checkpoint_routes.ROUTES,
    ]


def openapi_document() -> dict[str, object]:
    return build_openapi(
        all_routes(),
        {
            **read_routes.SCHEMAS,
            **webhook_routes.SCHEMAS,
            **proof_routes.SCHEMAS,
            **checkpoint_routes.SCHEMAS,
        },
    )


def create_app(
    settings: Settings, store: EventStore, dsn: str, *, background: bool = True
) -> web.Application:
    """The HTTP application over the components built for these settings.
    `background` also runs the workers (projections, webhook dispatch) for
    the application's lifetime."""
    return app_for(build(settings, store, dsn), background=background)


def app_for(components: Components, *, background: bool = True) -> web.Application:
    # aiohttp's own limit sits just above ours so our check answers with a problem
    app = web.Application(
        client_max_size=MAX_BODY + 1024,
        middlewares=[
            request_context,
            problems,
            utf8_headers,
            authenticate,
            declared_query,
            idempotent_posts,
        ],
    )
    app[SERVICES] = components
    app[RESPONSES] = ResponseKeeper(components.store, components.settings.cipher_key)
    register(app, all_routes())
    ops_routes.add_docs_static(app)
    add_pages(app)
    app[ops_routes.OPENAPI] = openapi_document()
    app[STOPPING] = asyncio.Event()
    app.on_startup.append(_signing_key)
    app.on_shutdown.append(_stopping)
    if background:
        app.cleanup_ctx.append(_workers)
    return app


async def _signing_key(app: web.Application) -> None:
    """Read (or create) the checkpoint signing key before serving: a missing
    or unreadable key stops the start, not a request later."""
    app[SERVICES].checkpoints.signing_key()


async def _stopping(app: web.Application) -> None:
    app[STOPPING].set()


async def _workers(app: web.Application) -> AsyncIterator[None]:
    components = app[SERVICES]
    await components.start_workers()
    yield
    await components.stop_workers()

"""The aiohttp application: wiring of routes, middlewares and the store."""

from __future__ import annotations

from aiohttp import web

from service.settings import Settings
from service.store.eventstore import EventStore

STORE = web.AppKey("store", EventStore)
SETTINGS = web.AppKey("settings", Settings)


async def healthz(request: web.Request) -> web.Response:
    """The process is up (says nothing about the database)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready to serve: the database answers and its migrations are applied."""
    store = request.app[STORE]
    if not await store.ping():
        return web.json_response({"status": "unavailable", "database": "unreachable"}, status=503)
    pending = await store.pending_migrations()
    if pending:
        return web.json_response(
            {"status": "unavailable", "pending_migrations": pending}, status=503
        )
    return web.json_response({"status": "ready"})


def create_app(settings: Settings, store: EventStore) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[SETTINGS] = settings
    app[STORE] = store
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app

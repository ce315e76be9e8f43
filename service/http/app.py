"""The aiohttp application: routes, middlewares, and the services they use,
including the background workers (projections, webhook dispatch) that start
and stop with it."""

from __future__ import annotations

import asyncio

from aiohttp import web

from domain import Relationship
from projections import all_projections
from projections.webhook_outbox import WebhookOutbox
from service.application import Application
from service.codec import mapper_for
from service.http import ops_routes, read_routes, relationship_routes
from service.http.context import SERVICES, Services
from service.http.idempotency import ResponseKeeper
from service.http.metrics import Metrics
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
from service.http.tokens import TokenRegistry
from service.projection_runner import ProjectionRunner
from service.read_models import ReadModels
from service.relationships import RelationshipRepository
from service.settings import Settings
from service.store.eventstore import EventStore
from service.store.records import StoredRecord
from service.supervisor import Supervisor
from service.webhooks import routes as webhook_routes
from service.webhooks.dispatcher import Dispatcher, DispatcherConfig
from service.webhooks.sealing import SecretSealer


def all_routes() -> list[Route]:
    return [
        *ops_routes.ROUTES,
        *relationship_routes.ROUTES,
        *read_routes.ROUTES,
        *webhook_routes.ROUTES,
    ]


def openapi_document() -> dict[str, object]:
    return build_openapi(all_routes(), {**read_routes.SCHEMAS, **webhook_routes.SCHEMAS})


def build_services(settings: Settings, store: EventStore, dsn: str) -> Services:
    metrics = Metrics()
    repository = RelationshipRepository(store, mapper_for(settings))

    def decode(record: StoredRecord) -> Relationship.Event:
        return repository.decode(record).event

    runner = ProjectionRunner(
        store, dsn, decode, [*all_projections(), WebhookOutbox()], registry=metrics.registry
    )
    sealer = SecretSealer(settings.cipher_key)
    dispatcher = Dispatcher(
        store,
        DispatcherConfig(
            retry_schedule=settings.webhook_retry_schedule,
            allow_private=settings.webhook_allow_private,
            timeout_s=settings.webhook_timeout_s,
            lease_s=3 * settings.webhook_timeout_s + 5,
            sealer=sealer,
        ),
        on_attempt=metrics.webhook_attempt,
    )
    return Services(
        settings=settings,
        application=Application(repository, on_saved=metrics.saved),
        store=store,
        repository=repository,
        tokens=TokenRegistry(store, settings.admin_token),
        metrics=metrics,
        runner=runner,
        read_models=ReadModels(store, decode, runner),
        dispatcher=dispatcher,
        sealer=sealer,
        supervisor=Supervisor(on_failure=metrics.task_failed),
        responses=ResponseKeeper(store, settings.cipher_key),
    )


def create_app(
    settings: Settings, store: EventStore, dsn: str, *, background: bool = True
) -> web.Application:
    """`background` runs the projection workers and the webhook dispatcher in
    this process (every process may: they coordinate through PostgreSQL)."""
    # aiohttp's own limit sits just above ours so our check answers with a problem
    app = web.Application(
        client_max_size=MAX_BODY + 1024,
        middlewares=[request_context, problems, utf8_headers, authenticate, declared_query],
    )
    services = build_services(settings, store, dsn)
    app[SERVICES] = services
    register(app, all_routes())
    app[ops_routes.OPENAPI] = openapi_document()
    app[STOPPING] = asyncio.Event()
    app.on_shutdown.append(_stopping)
    if background:
        app.on_startup.append(_start_workers)
        app.on_cleanup.append(_stop_workers)
    return app


async def _stopping(app: web.Application) -> None:
    app[STOPPING].set()


async def _start_workers(app: web.Application) -> None:
    services = app[SERVICES]
    await services.runner.start(services.supervisor)
    await services.dispatcher.start(services.supervisor)


async def _stop_workers(app: web.Application) -> None:
    services = app[SERVICES]
    await services.supervisor.stop()
    await services.dispatcher.stop()
    await services.runner.stop()

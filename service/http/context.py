"""What every handler may use, kept on the application under one key."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from service.application import Application
from service.http.idempotency import ResponseKeeper
from service.http.metrics import Metrics
from service.http.tokens import Principal, TokenRegistry
from service.projection_runner import ProjectionRunner
from service.read_models import ReadModels
from service.relationships import RelationshipRepository
from service.settings import Settings
from service.store.eventstore import EventStore
from service.supervisor import Supervisor
from service.webhooks.dispatcher import Dispatcher
from service.webhooks.sealing import SecretSealer


@dataclass
class Services:
    settings: Settings
    application: Application
    """Decides and saves every command (routes only parse, call it and render)."""
    store: EventStore
    repository: RelationshipRepository
    tokens: TokenRegistry
    metrics: Metrics
    runner: ProjectionRunner
    read_models: ReadModels
    dispatcher: Dispatcher
    sealer: SecretSealer
    """Seals webhook secrets before they are stored."""
    supervisor: Supervisor
    """Runs every background task of this process (restarts them after a failure)."""
    responses: ResponseKeeper
    """Responses kept for Idempotency-Key replays (sealed, expiring)."""


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def principal(request: web.Request) -> Principal:
    value = request.get("principal")
    assert isinstance(value, Principal), "route without authentication"
    return value

"""The one composition root: every component of a process, built from the settings.

``serve`` (HTTP, and the workers unless ``MENTORFLOW_RUN_WORKERS=0``),
``worker`` (the workers without HTTP), the auditor's commands, the tests and
the benchmarks all get their store, codec, repository, application, read
models, projection runner, webhook dispatcher and supervisor from here, so
there is one wiring to read and to change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from domain import Relationship
from projections import all_projections
from service.access.tokens import TokenRegistry
from service.platform.metrics import Metrics
from service.platform.settings import Settings
from service.platform.supervisor import Supervisor
from service.projection_runner import ProjectionRunner
from service.relationships.application import Application
from service.relationships.codec import codec_for
from service.relationships.read_models import ReadModels
from service.relationships.repository import RelationshipRepository
from service.risk import TASK_NAME as RISK_TASK
from service.risk import RiskWorker
from service.store.eventstore import EventStore
from service.store.opening import open_existing_store, open_store
from service.store.records import StoredRecord
from service.verifiable.checkpoints import Checkpoints
from service.verifiable.evidence import Evidence
from service.verifiable.publisher import CheckpointPublisher
from service.verifiable.signing_key import SigningKey, load_signing_key
from service.verifiable.tree import MerkleTree
from service.verifiable.tree_builder import TreeBuilder
from service.webhooks.dispatcher import Dispatcher, DispatcherConfig
from service.webhooks.outbox import WebhookOutbox
from service.webhooks.sealing import SecretSealer


@dataclass
class Components:
    """Everything a process runs on (one instance per process)."""

    settings: Settings
    store: EventStore
    dsn: str
    metrics: Metrics
    repository: RelationshipRepository
    application: Application
    """Decides and saves every command (routes, CLI and workers only call it)."""
    tokens: TokenRegistry
    runner: ProjectionRunner
    read_models: ReadModels
    dispatcher: Dispatcher
    sealer: SecretSealer
    """Seals webhook secrets before they are stored."""
    supervisor: Supervisor
    """Runs every background task of this process (restarts them after a failure)."""
    tree_builder: TreeBuilder
    """Extends the stored Merkle tree over the global log (one process at a time builds)."""
    checkpoints: Checkpoints
    """The log's signed checkpoints (publishing and reading them)."""
    publisher: CheckpointPublisher
    evidence: Evidence
    """Evidence bundles and the inclusion status of a relationship."""
    risk: RiskWorker
    """Evaluates the at-risk rules as time passes (one process at a time, by lease)."""

    def decode(self, record: StoredRecord) -> Relationship.Event:
        return self.repository.decode(record).event

    async def start_workers(self) -> None:
        """Projections, webhook dispatch, the Merkle tree builder, the checkpoint
        publisher and the risk worker, under this
        process's supervisor (every process may run them: they coordinate
        through PostgreSQL)."""
        await self.runner.start(self.supervisor)
        await self.dispatcher.start(self.supervisor)
        self.tree_builder.start(self.supervisor)
        self.checkpoints.signing_key()  # a missing or bad key stops the start, loudly
        self.publisher.start(self.supervisor)
        if self.settings.risk_worker:
            self.supervisor.spawn(RISK_TASK, self.risk.run)

    async def stop_workers(self) -> None:
        await self.supervisor.stop()
        await self.dispatcher.stop()
        await self.runner.stop()


def build(settings: Settings, store: EventStore, dsn: str) -> Components:
    metrics = Metrics()
    repository = RelationshipRepository(store, codec_for(settings))

    def decode(record: StoredRecord) -> Relationship.Event:
        return repository.decode(record).event

    runner = ProjectionRunner(  # the outbox first: it reads at once on each tick (phase_of)
        store, dsn, decode, [WebhookOutbox(), *all_projections()], registry=metrics.registry
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
    checkpoints = Checkpoints(store, MerkleTree(store), _key_loader(settings), settings.log_origin)
    application = Application(
        repository,
        on_saved=lambda saved: metrics.appended(r.event.api_type for r in saved.events),
    )
    return Components(
        settings=settings,
        store=store,
        dsn=dsn,
        metrics=metrics,
        repository=repository,
        application=application,
        tokens=TokenRegistry(store, settings.admin_token),
        runner=runner,
        read_models=ReadModels(store, decode, runner, policy=settings.risk_policy),
        dispatcher=dispatcher,
        sealer=sealer,
        supervisor=Supervisor(on_failure=metrics.task_failed),
        tree_builder=TreeBuilder(store, dsn, on_progress=metrics.tree_built),
        checkpoints=checkpoints,
        publisher=CheckpointPublisher(checkpoints, settings.checkpoint_interval_s),
        evidence=Evidence(store, checkpoints),
        risk=RiskWorker(
            application,
            runner,
            dsn,
            policy=settings.risk_policy,
            interval_s=settings.risk_interval_s,
            metrics=metrics,
        ),
    )


def _key_loader(settings: Settings) -> Callable[[], SigningKey]:
    """The signing key, read (or created) on first use and kept: commands that
    never sign never touch it."""
    loaded: list[SigningKey] = []

    def key() -> SigningKey:
        if not loaded:
            loaded.append(load_signing_key(settings))
        return loaded[0]

    return key


@asynccontextmanager
async def opened(settings: Settings, *, existing: bool = False) -> AsyncIterator[Components]:
    """The components on the settings' database, the store closed afterwards.
    ``existing``: the caller only reads, so no database or schema is created."""
    dsn, store = await (open_existing_store(settings) if existing else open_store(settings))
    try:
        yield build(settings, store, dsn)
    finally:
        await store.close()

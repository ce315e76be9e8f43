"""The runner itself: one worker per projection, started under a supervisor,
and read-your-writes for readers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import OrderedDict
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry

from domain import Relationship
from projections import Projection, all_projections
from service.platform.supervisor import Supervisor
from service.projection_runner.metrics import ProjectionMetrics
from service.projection_runner.rebuild import Rebuilding
from service.projection_runner.state import Worker
from service.store.eventstore import EventStore
from service.store.records import StoredRecord

LIVE_READ_INTERVAL = 0.1
"""Seconds between two reads of a busy log by a projection that is at its
head: a batch per 100 ms instead of a transaction per group commit, for at
most 100 ms more lag under load (the webhook target is 500 ms
commit-to-delivery)."""


class ProjectionRunner(Rebuilding):
    """Start with ``await runner.start(supervisor)``, stop with ``await runner.stop()``.

    ``dsn`` is the database URL the store was opened with (the worker locks
    live on dedicated connections, outside the store's pool); the process's
    composition root (service.composition) builds the service's runner.
    """

    def __init__(
        self,
        store: EventStore,
        dsn: str,
        decode: Callable[[StoredRecord], Relationship.Event],
        projections: Sequence[Projection] | None = None,
        *,
        batch_size: int = 1000,
        poll_interval: float = 1.0,
        min_interval: float = LIVE_READ_INTERVAL,
        takeover_interval: float = 1.0,
        metrics_interval: float = 5.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.store = store
        self.dsn = dsn
        self._decode = decode
        self.projections = list(all_projections() if projections is None else projections)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.min_interval = min_interval
        self.takeover_interval = takeover_interval
        self.metrics_interval = metrics_interval
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = ProjectionMetrics(self.registry)
        self._workers = {p.name: Worker(p) for p in self.projections}
        self._live_events = OrderedDict()
        self._supervisor: Supervisor | None = None
        self._owns_supervisor = False
        self._spawned: list[str] = []

    @property
    def names(self) -> list[str]:
        return list(self._workers)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self, supervisor: Supervisor | None = None) -> None:
        """Run one worker per projection, and the metrics refresher, as tasks
        of ``supervisor`` (the process's; without one, a supervisor of the
        runner's own). The supervisor restarts a worker that failed, after a
        back-off, once its ``release`` has given back the projection's lock.
        Idempotent."""
        if self._spawned:
            return
        if supervisor is None:
            supervisor, self._owns_supervisor = Supervisor(), True
        self._supervisor = supervisor
        for worker in self._workers.values():
            name = f"projection-{worker.projection.name}"
            supervisor.spawn(
                name,
                functools.partial(self._lead, worker),
                release=functools.partial(self._release, worker),
            )
            self._spawned.append(name)
        supervisor.spawn("projection-metrics", self._publish_metrics)
        self._spawned.append("projection-metrics")

    async def stop(self) -> None:
        """Stop every worker; a batch in flight is rolled back (it will be
        processed again by whoever runs the projection next)."""
        supervisor, spawned = self._supervisor, self._spawned
        self._spawned = []
        if supervisor is not None:
            for name in spawned:
                await supervisor.cancel(name)
            if self._owns_supervisor:
                await supervisor.stop()
        self._supervisor, self._owns_supervisor = None, False

    @property
    def running(self) -> bool:
        return bool(self._spawned)

    def is_leader(self, name: str) -> bool:
        """Whether this process runs the projection's worker now."""
        return self._worker(name).leading

    async def wait_until_projected(
        self, name: str | None, position: int, timeout: float = 5.0
    ) -> bool:
        """Wait until projection ``name`` (every projection when None) has
        committed ``position``: read-your-writes after an append. False on
        timeout. Cheap when this process runs the worker: woken by its
        commits, it never queries (the worker is the only writer of the
        checkpoint while it holds the lock); otherwise polls the checkpoint."""
        names = self.names if name is None else [name]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for each in names:
            if not await self._wait_one(each, position, deadline):
                return False
        return True

    async def _wait_one(self, name: str, position: int, deadline: float) -> bool:
        worker = self._worker(name)
        loop = asyncio.get_running_loop()
        delay = 0.005
        while True:
            committed = worker.committed
            if committed is not None and committed[1] >= position:
                return True
            woken = worker.progressed
            running_here = worker.leading and committed is not None
            if not running_here and await self.checkpoint(name) >= position:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(delay, remaining)):
                    await woken.wait()
            delay = min(delay * 2, 0.2)

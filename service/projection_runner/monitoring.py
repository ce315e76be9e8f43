"""Where each projection is: checkpoints, lag, failures, and the metrics
refreshed from them."""

from __future__ import annotations

import asyncio
import logging

from service.projection_runner.state import (
    FAILURES,
    GENERATION,
    ProjectionFailure,
    RunnerParts,
    tracking_name,
)

log = logging.getLogger("service.projection_runner")


class Monitoring(RunnerParts):
    """Checkpoints, lag and failures, as read from the database, and the
    gauges refreshed from them."""

    # --- checkpoints, lag, failures, read-your-writes -----------------------------------------

    async def checkpoint(self, name: str) -> int:
        """The last position the projection's current generation has committed."""
        self._worker(name)
        generation = await self.store.with_connection(lambda c: c.fetchval(GENERATION, name))
        position = await self.store.tracking_position(tracking_name(name, generation or 1))
        return position or 0

    async def lag(self) -> dict[str, int]:
        """Per projection: events in the log not yet projected."""
        last = await self.store.max_position()
        return {name: max(0, last - await self.checkpoint(name)) for name in self._workers}

    async def failures(self) -> list[ProjectionFailure]:
        """The projections stuck at an event, whichever process runs them."""
        rows = await self.store.with_connection(lambda c: c.fetch(FAILURES, self.names))
        return [
            ProjectionFailure(r["name"], r["failed_position"], r["failed_error"], r["failed_at"])
            for r in rows
        ]

    async def refresh_metrics(self) -> dict[str, int]:
        """Update the lag, checkpoint and stuck-position gauges from the
        database (call it from the ``/metrics`` handler for exact figures; a
        background task also refreshes them every ``metrics_interval`` seconds)."""
        last = await self.store.max_position()
        lags: dict[str, int] = {}
        for name in self._workers:
            position = await self.checkpoint(name)
            lags[name] = max(0, last - position)
            self.metrics.lag.labels(name).set(lags[name])
            self.metrics.checkpoint.labels(name).set(position)
        stuck = {failure.projection: failure.position for failure in await self.failures()}
        for name in self._workers:
            self.metrics.stuck.labels(name).set(stuck.get(name, 0))
        return lags

    async def _publish_metrics(self) -> None:
        while True:
            try:
                await self.refresh_metrics()
            except Exception as exc:  # the database may be away: keep the last figures
                log.debug("projection metrics not refreshed: %s", exc)
            await asyncio.sleep(self.metrics_interval)

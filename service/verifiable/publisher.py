"""The checkpoint publisher: a background task that signs a checkpoint when
the log has grown, checking at least every `MENTORFLOW_CHECKPOINT_INTERVAL`
seconds (default 60).

Every `serve` and `worker` process runs one, under its supervisor; they
coordinate through the advisory lock `Checkpoints.publish` takes, so only one
signs a given tree size and the others find nothing to do.
"""

from __future__ import annotations

import asyncio
import logging

from service.platform.supervisor import Supervisor
from service.verifiable.checkpoints import Checkpoints

log = logging.getLogger(__name__)

PUBLISHER_TASK = "checkpoint-publisher"


class CheckpointPublisher:
    def __init__(self, checkpoints: Checkpoints, interval_s: float) -> None:
        self.checkpoints = checkpoints
        self.interval_s = interval_s
        self.published = 0
        """Checkpoints this process signed (tests and logs)."""

    def start(self, supervisor: Supervisor) -> None:
        supervisor.spawn(PUBLISHER_TASK, self.run)

    async def run(self) -> None:
        while True:
            if (await self.checkpoints.publish()).new:
                self.published += 1
            await asyncio.sleep(self.interval_s)

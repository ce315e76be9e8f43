"""A second process running the counter projection (for the takeover test):

    python -m tests.projections.worker_process DSN SCHEMA

Prints ``leading`` once it holds the projection's lock, then runs until killed.
"""

from __future__ import annotations

import asyncio
import sys

from domain import make_mapper
from service.relationships.repository import RelationshipRepository
from service.store.eventstore import EventStore
from tests.projections.support import Counter, runner_for


async def main(dsn: str, schema: str) -> None:
    store = await EventStore.open(dsn, schema, run_migrations=False)
    runner = runner_for(store, dsn, RelationshipRepository(store, make_mapper()), [Counter()])
    await runner.start()
    while True:
        if runner.is_leader(Counter.name):
            break
        await asyncio.sleep(0.02)
    print("leading", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))

"""Server time to render the relationship page for a 1,000-event relationship,
as a ratio against a baseline measured in the same process and run.

The page (`/ui/relationships/{id}?version=N`) is a shell without data; its
script then reads the API. Every request it makes is timed here, one after
another on an in-process server (aiohttp's TestServer over the real
application with its workers), each the median of `--rounds`.

First view (what the page waits for before it shows version N: slider,
diagram, state, what changed, the start of the timeline):
- the shell (`GET /ui/relationships/{id}?version=N`),
- the relationship now (`GET /v1/relationships/{id}`: the slider's end),
- the state at the version (`GET /v1/relationships/{id}?version=N`),
- the event at the version (`GET .../events?from_version=N&limit=1`),
- the first timeline page (`GET .../timeline?limit=100`).

Loaded afterwards, while the page is already usable: the rest of the
timeline (`limit=500` pages) and the verification (`GET .../audit/verify`,
which also proves each event into the latest signed checkpoint).

Baseline: `GET /v1/relationships/{id}` alone. A slider move costs one
`?version=N` read (and one event read until the timeline has it).
Target: the first view under 100 ms.

    python bench/pages.py [--events 1000] [--rounds 20]
    (DATABASE_URL selects a server; default: the embedded PostgreSQL)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The repository root replaces this script's folder on the path: a module of
# that folder (bench/http.py) would otherwise shadow the standard library's.
sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp.test_utils import TestClient, TestServer

from domain.samples import long_history
from service.composition.components import build
from service.http.app import app_for
from service.platform.settings import Settings
from service.store.eventstore import EventStore
from tests.support.database import database_url_for_tests, drop_schema, new_schema_name

TOKEN = "bench-pages-admin-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


async def timed(client: TestClient[Any, Any], path: str, rounds: int) -> tuple[float, Any]:
    """The median time of `rounds` GETs of `path` (seconds), and the last body."""
    times = []
    body: Any = None
    for _ in range(rounds):
        started = time.perf_counter()
        async with client.get(path, headers=HEADERS) as response:
            assert response.status == 200, (path, response.status, await response.text())
            body = await response.read()
        times.append(time.perf_counter() - started)
    return statistics.median(times), body


async def main(events: int, rounds: int) -> None:
    dsn = database_url_for_tests()
    schema = new_schema_name("bench")
    store = await EventStore.open(dsn, schema)
    try:
        settings = Settings(
            data_dir=Path(tempfile.mkdtemp(prefix="mentorflow-bench-")),
            db_schema=schema,
            admin_token=TOKEN,
        )
        components = build(settings, store, dsn)
        relationship = long_history(events)
        await components.application.save_decided(relationship)
        rid = relationship.id
        version = relationship.version // 2
        app = app_for(components, background=True)
        async with TestClient(TestServer(app)) as client:
            # wait until the read models (and the Merkle tree) have the whole history
            last = await store.max_position()
            await timed(client, f"/v1/relationships/{rid}/timeline?limit=1&min_position={last}", 1)
            for _ in range(200):
                async with client.get(f"/v1/relationships/{rid}/evidence", headers=HEADERS) as r:
                    if r.status == 200:
                        break
                await asyncio.sleep(0.1)
            print(f"relationship with {relationship.version} events; page at version {version}")

            base = f"/v1/relationships/{rid}"
            await timed(client, base, 5)  # warm-up: the first reads pay for caches
            baseline, _ = await timed(client, base, rounds)
            first: dict[str, float] = {}
            first["shell"], _ = await timed(
                client, f"/ui/relationships/{rid}?version={version}", rounds
            )
            first["relationship now"], _ = await timed(client, base, rounds)
            first["state at version"], _ = await timed(client, f"{base}?version={version}", rounds)
            first["event at version"], _ = await timed(
                client, f"{base}/events?from_version={version}&limit=1", rounds
            )
            first["timeline, first 100"], raw = await timed(
                client, f"{base}/timeline?limit=100", rounds
            )
            later: dict[str, float] = {"timeline, the rest": 0.0}
            cursor = json.loads(raw)["next_cursor"]
            pages = 1
            while cursor:
                spent, raw = await timed(
                    client, f"{base}/timeline?limit=500&cursor={cursor}", max(3, rounds // 4)
                )
                later["timeline, the rest"] += spent
                pages += 1
                cursor = json.loads(raw)["next_cursor"]
            later["verification"], _ = await timed(client, f"{base}/audit/verify", 3)

            def show(name: str, spent: float) -> None:
                print(f"{name:<36} {1000 * spent:>9.2f} {spent / baseline:>11.2f}")

            print(f"\nmedian of {rounds} rounds (3 for the verification), in-process server")
            print(f"{'request':<36} {'ms':>9} {'x baseline':>11}")
            show("baseline GET /v1/relationships/{id}", baseline)
            for name, spent in first.items():
                show(name, spent)
            total = sum(first.values())
            show("= first view", total)
            for name, spent in later.items():
                show(f"then: {name}", spent)
            print(
                f"\nfirst view: {1000 * total:.1f} ms = {total / baseline:.1f}x the baseline"
                f" (target: under 100 ms) -> {'OK' if total < 0.1 else 'OVER'}"
            )
            move = first["state at version"] + first["event at version"]
            print(f"slider move: {1000 * move:.2f} ms = {move / baseline:.2f}x the baseline")
            print(
                f"whole timeline ({pages} pages): "
                f"{1000 * (first['timeline, first 100'] + later['timeline, the rest']):.1f} ms"
            )
    finally:
        await store.close()
        await drop_schema(dsn, schema)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.rounds))

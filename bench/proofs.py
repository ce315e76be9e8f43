"""Merkle proofs and the tree builder at scale, as ratios against baselines in one run.

Builds a log of `--events` events (inserted set-based, straight into the events
table with valid chains and positions: the fastest way to a large log), then:
- tree builder: events/s of building the stored tree from nothing
  (service.verifiable.tree_builder.catch_up), against the ceiling of just
  reading the same leaf hashes (the SQL it runs, without hashing in Python or
  writing nodes);
- verify's recomputation of the tree (`mentorflow verify --all`), events/s;
- inclusion and consistency proofs (service.verifiable.tree.MerkleTree) at
  random positions and sizes: p50/p99 latency, against one single-row primary
  key SELECT on the same pool (the baseline), target < 10 ms; and the
  inclusion route over HTTP (in process) against `GET /healthz`.

- with `--appends SECONDS`: 16 concurrent single-event writers on the store,
  with and without a tree builder following them in the same process
  (interleaved rounds, medians): what the builder costs appends.

    python bench/proofs.py [--events 1000000] [--proofs 2000] [--keep]
                           [--appends SECONDS --rounds 3]
    (DATABASE_URL selects a server; default: the embedded PostgreSQL)
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/http.py would shadow http

import aiohttp  # noqa: E402
from aiohttp.test_utils import TestServer  # noqa: E402

from bench.appends import run_writers  # noqa: E402
from service.http.app import create_app  # noqa: E402
from service.platform.settings import Settings  # noqa: E402
from service.platform.supervisor import Supervisor  # noqa: E402
from service.store.eventstore import EventStore  # noqa: E402
from service.store.records import NewEvent  # noqa: E402
from service.verifiable.audit import audit_tree  # noqa: E402
from service.verifiable.tree import MerkleTree  # noqa: E402
from service.verifiable.tree_builder import TreeBuilder, catch_up  # noqa: E402
from tests.support.database import database_url_for_tests, drop_schema  # noqa: E402

CHUNK = 100_000
_FILL = """
INSERT INTO events (position, stream_id, version, event_id, topic, payload, metadata,
                    recorded_at, chain_hash)
SELECT p, s, 1, e, 'relationship.opened', pl, '{"actor": {"id": "bench"}}'::jsonb, ts,
       sha256(mf_canonical(p, s, 1, e, 'relationship.opened', pl,
                           '{"actor": {"id": "bench"}}'::jsonb, ts))
  FROM (SELECT p, gen_random_uuid() AS s, gen_random_uuid() AS e,
               convert_to(repeat('x', 120) || p::text, 'UTF8') AS pl,
               clock_timestamp() AS ts
          FROM generate_series($1::bigint, $2::bigint) AS p) g
"""
_LEAVES = (
    "SELECT position, sha256('\\x00'::bytea || mf_canonical(position, stream_id, version,"
    " event_id, topic, payload, metadata, recorded_at)) AS leaf FROM events"
    " WHERE position > $1 AND position <= $2 ORDER BY position"
)
_ONE_ROW = "SELECT hash FROM merkle_nodes WHERE level = 0 AND idx = $1"


async def fill(store: EventStore, events: int) -> float:
    started = time.perf_counter()

    async def insert(conn: asyncpg.Connection) -> None:
        for first in range(1, events + 1, CHUNK):
            last = min(events, first + CHUNK - 1)
            await conn.execute(_FILL, first, last)
            print(f"  filled {last:,} events", end="\r", flush=True)

    await store.with_connection(insert)
    await store.with_connection(
        lambda conn: conn.execute("UPDATE event_position SET last_position = $1", events)
    )
    await store.with_connection(lambda conn: conn.execute("ANALYZE events"))
    print()
    return time.perf_counter() - started


async def read_ceiling(store: EventStore, events: int, batch: int = 20_000) -> float:
    """Events/s of only reading the leaf hashes the builder reads."""

    async def run(conn: asyncpg.Connection) -> None:
        for after in range(0, events, batch):
            await conn.fetch(_LEAVES, after, after + batch)

    started = time.perf_counter()
    await store.with_connection(run)
    return events / (time.perf_counter() - started)


async def latencies(call: Callable[[], Awaitable[object]], count: int) -> list[float]:
    for _ in range(min(50, count)):
        await call()  # warm up the pool and the plans
    found = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        found.append((time.perf_counter() - started) * 1000)
    return found


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


async def main(events: int, proofs: int, keep: bool) -> None:
    dsn = database_url_for_tests()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    store = await EventStore.open(dsn, schema)
    try:
        seconds = await fill(store, events)
        print(f"log of {events:,} events inserted in {seconds:.1f} s")
        ceiling = await read_ceiling(store, events)
        started = time.perf_counter()
        assert await catch_up(store) == events
        built = events / (time.perf_counter() - started)
        print(f"tree builder: {built:,.0f} events/s; reading the leaves alone: {ceiling:,.0f}/s")

        tree = MerkleTree(store)
        rng = random.Random(7)

        async def one_row() -> object:
            return await store.with_connection(
                lambda conn: conn.fetchval(_ONE_ROW, rng.randrange(events))
            )

        async def inclusion() -> object:
            size = rng.randint(events // 2, events)
            return await tree.inclusion(rng.randrange(size), size)

        async def consistency() -> object:
            second = rng.randint(events // 2, events)
            return await tree.consistency_proof(rng.randint(1, second), second)

        token = "bench-admin-token-" + uuid.uuid4().hex
        settings = Settings(database_url=dsn, db_schema=schema, admin_token=token)
        server = TestServer(create_app(settings, store, dsn, background=False))
        await server.start_server()
        session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"})

        async def over_http() -> object:
            size = rng.randint(events // 2, events)
            url = server.make_url(
                f"/v1/proofs/inclusion?position={rng.randint(1, size)}&tree_size={size}"
            )
            async with session.get(url) as response:
                assert response.status == 200
                return await response.read()

        async def health_over_http() -> object:
            async with session.get(server.make_url("/healthz")) as response:
                return await response.read()

        results = {}
        try:
            for name, call in (
                ("single-row SELECT (baseline)", one_row),
                ("inclusion proof", inclusion),
                ("consistency proof", consistency),
                ("GET /healthz over HTTP (baseline)", health_over_http),
                ("GET /v1/proofs/inclusion", over_http),
            ):
                results[name] = await latencies(call, proofs)
        finally:
            await session.close()
            await server.close()
        base = statistics.median(results["single-row SELECT (baseline)"])
        print()
        http_base = statistics.median(results["GET /healthz over HTTP (baseline)"])
        print(f"{'subject':36}{'p50 ms':>9}{'p99 ms':>9}{'p50 vs base':>13}")
        for name, values in results.items():
            p50, p99 = statistics.median(values), pct(values, 99)
            ratio = p50 / (http_base if "HTTP" in name or name.startswith("GET") else base)
            print(f"{name:36}{p50:>9.2f}{p99:>9.2f}{ratio:>12.2f}x")
        print(f"\ntree builder vs reading the leaves alone: {built / ceiling:.2f}x")
        started = time.perf_counter()
        audit = await store.with_connection(lambda conn: audit_tree(conn, [events]))
        assert not audit.problems()
        checked = events / (time.perf_counter() - started)
        print(
            f"verify's tree check (recompute in Python and compare): {checked:,.0f} events/s"
            f" = {checked / ceiling:.2f}x reading the leaves alone"
        )
        print("targets: proofs < 10 ms at 1,000,000 events")
    finally:
        await store.close()
        if keep:
            print(f"kept schema {schema}")
        else:
            await drop_schema(dsn, schema)


async def appends_with_builder(seconds: float, rounds: int) -> None:
    dsn = database_url_for_tests()
    payload = b'{"type": "meeting.held", "data": {"held_at": "2026-11-22T10:00:00+00:00"}}'
    rates: dict[bool, list[float]] = {False: [], True: []}
    for round_no in range(rounds):
        for with_builder in (False, True):
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            store = await EventStore.open(dsn, schema, pool_size=20)
            supervisor = Supervisor()
            if with_builder:
                TreeBuilder(store, dsn).start(supervisor)

            async def write(stream: uuid.UUID, version: int, store: EventStore = store) -> None:
                await store.append([NewEvent(stream, version, "bench", payload)])

            try:
                await run_writers(write, 16, 0.3)
                rate = await run_writers(write, 16, seconds)
                built = await MerkleTree(store).size() if with_builder else 0
                logged = await store.max_position()
            finally:
                await supervisor.stop()
                await store.close()
                await drop_schema(dsn, schema)
            rates[with_builder].append(rate)
            label = "with the tree builder" if with_builder else "store alone"
            extra = (
                f" (tree at {built:,} of {logged:,} events as they stop)" if with_builder else ""
            )
            print(f"  round {round_no + 1}: {label:22} {rate:8.0f} ev/s{extra}")
    alone, beside = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"appends, 16 writers: {alone:,.0f} ev/s alone, {beside:,.0f} ev/s with the builder")
    print(f"  = {beside / alone:.2f}x (target: at least 0.90x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=2000)
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    parser.add_argument("--appends", type=float, metavar="SECONDS", help="see above")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.appends:
        asyncio.run(appends_with_builder(args.appends, args.rounds))
    else:
        asyncio.run(main(args.events, args.proofs, args.keep))

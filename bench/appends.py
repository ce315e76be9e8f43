"""Append throughput: the event store against two baselines, in one run.

Single-event writers, each appending to its own stream, at 1 and 16 at once:
- store:        service.store.EventStore.append (group commit, gap-free positions,
                hash chain, optimistic concurrency);
- raw asyncpg:  one INSERT per transaction into a similar table (the baseline);
- eventsourcing: the library's own psycopg PostgresApplicationRecorder.

Subjects run interleaved for several rounds and each figure is the median, so
a noisy machine hurts all three alike. Ratios are what to quote.

    python bench/appends.py [--seconds 2] [--rounds 3]
    (DATABASE_URL selects a server; default: the embedded PostgreSQL)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import asyncpg

sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/http.py would shadow http

from service.store.database import quote_ident
from service.store.eventstore import EventStore
from service.store.records import NewEvent
from tests.support.database import database_url_for_tests, drop_schema

PAYLOAD = b'{"type": "meeting.held", "data": {"held_at": "2026-11-22T10:00:00+00:00"}}'
Writer = Callable[[uuid.UUID, int], Awaitable[None]]


async def run_writers(write: Writer, writers: int, seconds: float) -> float:
    """Events/s of `writers` tasks, each appending to its own stream until time is up."""
    deadline = time.perf_counter() + seconds
    counts = [0] * writers

    async def writer(index: int) -> None:
        stream = uuid.uuid4()
        while time.perf_counter() < deadline:
            counts[index] += 1
            await write(stream, counts[index])

    started = time.perf_counter()
    await asyncio.gather(*(writer(i) for i in range(writers)))
    return sum(counts) / (time.perf_counter() - started)


async def store_subject(dsn: str, schema: str) -> tuple[Writer, Callable[[], Awaitable[None]]]:
    store = await EventStore.open(dsn, schema, pool_size=20)

    async def write(stream: uuid.UUID, version: int) -> None:
        await store.append([NewEvent(stream, version, "bench", PAYLOAD)])

    return write, store.close


async def raw_subject(dsn: str, schema: str) -> tuple[Writer, Callable[[], Awaitable[None]]]:
    conn = await asyncpg.connect(dsn)
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
    await conn.execute(
        f"CREATE TABLE {quote_ident(schema)}.raw_events (position bigserial PRIMARY KEY,"
        " stream_id uuid NOT NULL, version bigint NOT NULL, payload bytea NOT NULL,"
        " UNIQUE (stream_id, version))"
    )
    await conn.close()
    pool = await asyncpg.create_pool(
        dsn, min_size=16, max_size=20, server_settings={"search_path": schema}
    )
    assert pool is not None

    async def write(stream: uuid.UUID, version: int) -> None:
        await pool.execute(
            "INSERT INTO raw_events (stream_id, version, payload) VALUES ($1, $2, $3)",
            stream,
            version,
            PAYLOAD,
        )

    return write, pool.close


async def eventsourcing_subject(
    dsn: str, schema: str
) -> tuple[Writer, Callable[[], Awaitable[None]]]:
    """The library's recorder is synchronous: its writers are threads."""
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

    url = urlparse(dsn)
    query = parse_qs(url.query)
    conn = await asyncpg.connect(dsn)
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
    await conn.close()
    datastore = PostgresDatastore(
        dbname=url.path.lstrip("/") or "postgres",
        host=query.get("host", [url.hostname or "localhost"])[0],
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password or "",
        pool_size=16,
        schema=schema,
    )
    recorder = PostgresApplicationRecorder(datastore, events_table_name="es_events")
    recorder.create_table()
    executor = ThreadPoolExecutor(max_workers=16)

    def insert(stream: uuid.UUID, version: int) -> None:
        recorder.insert_events([StoredEvent(stream, version, "bench", PAYLOAD)])

    async def write(stream: uuid.UUID, version: int) -> None:
        await asyncio.get_running_loop().run_in_executor(executor, insert, stream, version)

    async def close() -> None:
        executor.shutdown()
        datastore.close()

    return write, close


async def settle(dsn: str) -> None:
    """Start every measurement from the same state: flush what the previous
    subject left in the WAL, so its checkpoint does not land on the next one."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CHECKPOINT")
    except asyncpg.InsufficientPrivilegeError:
        pass
    finally:
        await conn.close()
    await asyncio.sleep(0.2)


SUBJECTS = {
    "store": store_subject,
    "raw asyncpg (baseline)": raw_subject,
    "eventsourcing recorder": eventsourcing_subject,
}


async def main(seconds: float, rounds: int) -> None:
    dsn = database_url_for_tests()
    results: dict[tuple[str, int], list[float]] = {}
    for round_no in range(rounds):
        for writers in (1, 16):
            for name, make in SUBJECTS.items():
                schema = f"bench_{uuid.uuid4().hex[:10]}"
                await settle(dsn)
                write, close = await make(dsn, schema)
                try:
                    await run_writers(write, writers, 0.3)  # warm up
                    rate = await run_writers(write, writers, seconds)
                finally:
                    await close()
                    await drop_schema(dsn, schema)
                results.setdefault((name, writers), []).append(rate)
                print(f"  round {round_no + 1}: {name:24} {writers:2} writers {rate:8.0f} ev/s")
    print()
    print(f"{'subject':26}{'writers':>8}{'events/s (median)':>20}{'vs raw':>9}{'vs es':>9}")
    for writers in (1, 16):
        raw = statistics.median(results[("raw asyncpg (baseline)", writers)])
        es = statistics.median(results[("eventsourcing recorder", writers)])
        for name in SUBJECTS:
            rate = statistics.median(results[(name, writers)])
            print(f"{name:26}{writers:>8}{rate:>20.0f}{rate / raw:>8.2f}x{rate / es:>8.2f}x")
    print("\ntargets at 16 writers: store >= 2x raw, >= 5x eventsourcing")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rounds))

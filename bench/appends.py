"""Append throughput: the event store against three baselines, in one run.

Single-event writers, each appending to its own stream, at 1 and 16 at once:
- store:        service.store.EventStore.append (group commit, gap-free positions,
                hash chain, optimistic concurrency);
- raw asyncpg:  one INSERT per transaction into a similar table (the baseline);
- eventsourcing: the library's own psycopg PostgresApplicationRecorder;
- unchecked ceiling: what group commit alone could reach here. The same events
                go into a plain table with the events table's columns (position
                from a sequence, its only index; a constant 32-byte chain_hash)
                by one `INSERT ... SELECT FROM unnest(...)` per batch: no version
                or duplicate check, no hash chain, no position lock, no NOTIFY.

The ceiling forms its batches with the store's own queueing policy rather than
replaying recorded sizes: one batch in flight on a connection of its own (the
statement prepared), and a batch is everything queued when its flush task
first runs. Under the same closed-loop writers that policy forms the same
batches; both subjects' mean batch sizes (GroupCommitter.batch_sizes for the
store) are printed, so a difference would show.

Subjects run interleaved for several rounds and each figure is the median, so
a noisy machine hurts all of them alike. Ratios are what to quote. The store and
the ceiling both wait for one commit flush per batch; what the store adds per
batch is CPU (mf_append's probes for each stream's previous hash, the hash
chain, two more unique indexes, the position row, the subtransaction of the
optimistic path, NOTIFY). So the store's fraction of the ceiling is highest
when flushes are slow (a busy disk) and lowest on a quiet machine.

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
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import asyncpg

_BENCH, _ROOT = (str(Path(__file__).resolve().parents[i]) for i in (0, 1))
if _BENCH in sys.path:  # run as a script (bench/http.py would shadow http), not imported
    sys.path.remove(_BENCH)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from service.store.database import quote_ident  # noqa: E402
from service.store.eventstore import EventStore  # noqa: E402
from service.store.group_commit import Linger  # noqa: E402
from service.store.records import NewEvent  # noqa: E402
from tests.support.database import database_url_for_tests, drop_schema  # noqa: E402

PAYLOAD = b'{"type": "meeting.held", "data": {"held_at": "2026-11-22T10:00:00+00:00"}}'
Writer = Callable[[uuid.UUID, int], Awaitable[None]]
Subject = tuple[Writer, Callable[[], Awaitable[None]], "Counter[int] | None"]
"""A subject's writer, how to close it and, for group committers, the count of
batches of each size it sent (in appends)."""


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


async def store_subject(dsn: str, schema: str) -> Subject:
    store = await EventStore.open(dsn, schema, pool_size=20)

    async def write(stream: uuid.UUID, version: int) -> None:
        await store.append([NewEvent(stream, version, "bench", PAYLOAD)])

    return write, store.close, store.append_batch_sizes


async def raw_subject(dsn: str, schema: str) -> Subject:
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

    return write, pool.close, None


async def eventsourcing_subject(dsn: str, schema: str) -> Subject:
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

    return write, close, None


CEILING_INSERT = (
    "INSERT INTO ceiling_events (stream_id, version, event_id, topic, payload, metadata,"
    " recorded_at, chain_hash) SELECT u.stream, u.version, u.id, u.topic, u.payload,"
    " '{}'::jsonb, now(), $6 FROM unnest($1::uuid[], $2::bigint[], $3::uuid[], $4::text[],"
    " $5::bytea[]) AS u(stream, version, id, topic, payload)"
)


class CeilingCommitter:
    """Group commit with the store's queueing policy (one batch in flight, a
    batch is whatever is queued when its task first runs, after the store's
    linger when the batch before was shared) and nothing else."""

    def __init__(
        self, conn: asyncpg.Connection, statement: asyncpg.prepared_stmt.PreparedStatement
    ):
        self.conn = conn
        self.statement = statement
        self.queue: list[tuple[uuid.UUID, int, asyncio.Future[None]]] = []
        self.task: asyncio.Task[None] | None = None
        self.batch_sizes: Counter[int] = Counter()
        self.linger = Linger()
        self.last_batch = 0

    def submit(self, stream: uuid.UUID, version: int) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.append((stream, version, future))
        self.linger.queued(len(self.queue))
        if self.task is None:
            self._start()
        return future

    def _start(self) -> None:
        self.task = asyncio.create_task(self._flush())
        self.task.add_done_callback(self._done)

    def _done(self, _task: asyncio.Task[None]) -> None:
        self.task = None
        if self.queue:
            self._start()

    async def _flush(self) -> None:
        if self.linger.holds(self.last_batch, len(self.queue)):
            await self.linger.wait()
        batch, self.queue = self.queue, []
        self.last_batch = len(batch)
        self.batch_sizes[len(batch)] += 1
        try:
            await self.statement.fetch(
                [b[0] for b in batch],
                [b[1] for b in batch],
                [uuid.uuid4() for _ in batch],
                ["bench"] * len(batch),
                [PAYLOAD] * len(batch),
                CHAIN_HASH,
            )
        except Exception as exc:
            for *_, future in batch:
                future.set_exception(exc)
            return
        for *_, future in batch:
            future.set_result(None)


CHAIN_HASH = bytes(32)


async def ceiling_subject(dsn: str, schema: str) -> Subject:
    conn = await asyncpg.connect(dsn)
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
    await conn.execute(f"SET search_path TO {quote_ident(schema)}")
    await conn.execute(
        "CREATE TABLE ceiling_events ("
        " position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        " stream_id uuid NOT NULL, version bigint NOT NULL, event_id uuid NOT NULL,"
        " topic text NOT NULL, payload bytea NOT NULL, metadata jsonb NOT NULL,"
        " recorded_at timestamptz NOT NULL, chain_hash bytea NOT NULL)"
    )
    committer = CeilingCommitter(conn, await conn.prepare(CEILING_INSERT))

    async def write(stream: uuid.UUID, version: int) -> None:
        await committer.submit(stream, version)

    async def close() -> None:
        if committer.task is not None:  # the writers are done: this is the last batch
            await asyncio.wait([committer.task])
        await conn.close()

    return write, close, committer.batch_sizes


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
    "unchecked ceiling": ceiling_subject,
}
RAW, ES, CEILING = "raw asyncpg (baseline)", "eventsourcing recorder", "unchecked ceiling"
TARGET_VS_RAW, TARGET_VS_ES, TARGET_VS_CEILING = 4.0, 5.0, 0.5


def mean_batch(sizes: Counter[int]) -> float:
    batches = sum(sizes.values())
    return sum(size * n for size, n in sizes.items()) / batches if batches else 0.0


async def main(seconds: float, rounds: int) -> None:
    dsn = database_url_for_tests()
    results: dict[tuple[str, int], list[float]] = {}
    batches: dict[tuple[str, int], list[float]] = {}
    for round_no in range(rounds):
        for writers in (1, 16):
            for name, make in SUBJECTS.items():
                schema = f"bench_{uuid.uuid4().hex[:10]}"
                await settle(dsn)
                try:
                    write, close, sizes = await make(dsn, schema)
                    try:
                        await run_writers(write, writers, 0.3)  # warm up
                        if sizes is not None:
                            sizes.clear()
                        rate = await run_writers(write, writers, seconds)
                    finally:
                        await close()
                finally:
                    await drop_schema(dsn, schema)
                results.setdefault((name, writers), []).append(rate)
                line = f"  round {round_no + 1}: {name:24} {writers:2} writers {rate:8.0f} ev/s"
                if sizes is not None:
                    batches.setdefault((name, writers), []).append(mean_batch(sizes))
                    line += f"  (mean batch {mean_batch(sizes):5.2f} appends)"
                print(line, flush=True)
    print()
    print(
        f"{'subject':26}{'writers':>8}{'events/s (median)':>20}{'vs raw':>9}{'vs es':>9}"
        f"{'vs ceiling':>12}{'mean batch':>12}"
    )
    for writers in (1, 16):
        raw = statistics.median(results[(RAW, writers)])
        es = statistics.median(results[(ES, writers)])
        ceiling = statistics.median(results[(CEILING, writers)])
        for name in SUBJECTS:
            rate = statistics.median(results[(name, writers)])
            batch = batches.get((name, writers))
            print(
                f"{name:26}{writers:>8}{rate:>20.0f}{rate / raw:>8.2f}x{rate / es:>8.2f}x"
                f"{rate / ceiling:>11.0%}" + (f"{statistics.median(batch):>12.2f}" if batch else "")
            )
    store = statistics.median(results[("store", 16)])
    checks = [
        (
            f"store >= {TARGET_VS_RAW:g}x raw asyncpg",
            store / statistics.median(results[(RAW, 16)]),
            TARGET_VS_RAW,
            "x",
        ),
        (
            f"store >= {TARGET_VS_ES:g}x eventsourcing",
            store / statistics.median(results[(ES, 16)]),
            TARGET_VS_ES,
            "x",
        ),
        (
            f"store >= {TARGET_VS_CEILING:.0%} of the unchecked ceiling",
            store / statistics.median(results[(CEILING, 16)]),
            TARGET_VS_CEILING,
            "%",
        ),
    ]
    print("\ntargets at 16 writers (medians):")
    for label, ratio, target, unit in checks:
        shown = f"{ratio:.0%}" if unit == "%" else f"{ratio:.2f}x"
        print(f"  {label:42} {shown:>7}  {'met' if ratio >= target else 'NOT met'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rounds))

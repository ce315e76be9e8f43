"""Checkpoint publishing time against the number of events since the last
checkpoint, as ratios against a baseline measured in the same run.

Target (docs/performance.md): publishing a checkpoint costs time proportional
to the events since the last one (with the stored tree, the root of the new
size is O(log n) stored nodes), not to the size of the log.

1. A log of `--events` events is appended, the stored tree built (as the
   tree builder does in the background) and a first checkpoint published.
2. For each k in `--since` (default 1, 10, 100, 1000): k events are appended,
   then one checkpoint is published and timed (`--rounds` times; median).
   Baseline: the same publish after 1 event (the first k). The ratio
   time(k) / time(1) should stay well below k (a cost per new event, not per
   log event); the tree's root alone (`MerkleTree.root`) is timed too.
3. Growth: the log is doubled and the publish after 1 event timed again; a
   ratio near 1 means the cost does not grow with the log.

    python bench/checkpoints.py [--events 20000] [--since 1,10,100,1000] [--rounds 5]
    (DATABASE_URL selects a server; default: the embedded PostgreSQL)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from uuid import uuid4

# The repository root replaces this script's folder on the path: a module of
# that folder (bench/http.py) would otherwise shadow the standard library's.
sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.composition.components import build
from service.platform.settings import Settings
from service.store.eventstore import EventStore
from service.store.records import NewEvent
from service.verifiable.tree_builder import catch_up
from tests.support.database import database_url_for_tests, drop_schema, new_schema_name

BATCH = 1000


async def append(store: EventStore, n: int) -> None:
    """n events in streams of up to 10, in batches."""
    while n > 0:
        take = min(n, BATCH)
        events: list[NewEvent] = []
        while len(events) < take:
            stream = uuid4()
            size = min(10, take - len(events))
            events += [NewEvent(stream, v, "bench", b'{"x": %d}' % v) for v in range(1, size + 1)]
        await store.append(events)
        n -= take


async def main(total: int, since: list[int], rounds: int) -> None:
    dsn = database_url_for_tests()
    schema = new_schema_name("bench")
    store = await EventStore.open(dsn, schema)
    try:
        settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="mentorflow-bench-")))
        checkpoints = build(settings, store, dsn).checkpoints
        checkpoints.signing_key()
        started = time.perf_counter()
        await append(store, total)
        await catch_up(store)
        print(
            f"log: {total} events appended and the tree built in"
            f" {time.perf_counter() - started:.1f} s"
        )
        started = time.perf_counter()
        await checkpoints.publish()
        print(f"first checkpoint (the whole log): {1000 * (time.perf_counter() - started):.1f} ms")

        async def publish_after(k: int) -> tuple[float, float]:
            publishes, roots = [], []
            for _ in range(rounds):
                await append(store, k)
                await catch_up(store)  # the tree builder's work, not the publisher's
                size = await checkpoints.tree.size()
                t0 = time.perf_counter()
                await checkpoints.tree.root(size)
                roots.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                published = await checkpoints.publish()
                publishes.append(time.perf_counter() - t0)
                assert published.new and published.checkpoint.tree_size == size
            return statistics.median(publishes), statistics.median(roots)

        results = {k: await publish_after(k) for k in since}
        base, base_root = results[since[0]]
        print(f"\npublish after k events (median of {rounds}), log of ~{total} events")
        print(
            f"{'k':>7} {'publish ms':>11} {'ratio':>7} {'root ms':>9} {'ratio':>7}"
            f" {'other ms':>9} {'k ratio':>8}"
        )
        for k, (publish, root) in results.items():
            print(
                f"{k:>7} {1000 * publish:>11.2f} {publish / base:>7.2f} {1000 * root:>9.2f}"
                f" {root / base_root:>7.2f} {1000 * max(0.0, publish - root):>9.2f}"
                f" {k / since[0]:>8.0f}"
            )
        print("(root: MerkleTree.root alone; other: signing, the row, webhook messages, the lock)")
        size_before = await store.max_position()
        await append(store, size_before)
        await catch_up(store)
        await checkpoints.publish()
        grown, grown_root = await publish_after(since[0])
        print(
            f"\nlog doubled to {await store.max_position()} events: publish after {since[0]}"
            f" = {1000 * grown:.2f} ms ({grown / base:.2f}x the baseline; root"
            f" {grown_root / base_root:.2f}x)"
        )
        print("target: cost per new event, not per log event (ratios near 1 when doubled)")
    finally:
        await store.close()
        await drop_schema(dsn, schema)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--since", default="1,10,100,1000")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.events, [int(k) for k in args.since.split(",")], args.rounds))

"""Projection throughput and lag, against a baseline measured in the same run.

1. Rebuild: each read model replays the whole log from position 0 into a
   new generation of its tables built beside the serving ones (one
   transaction per batch with its checkpoint), then swaps them in.
   Ceiling: a plain read of the global log in the same batches, decoding
   every payload into its domain event, writing nothing. Targets
   (docs/performance.md): >= 20,000 events/s per projection, and >= 0.8x the
   ceiling measured in the same run. Every projection that has a rebuild is
   measured (the runner's; the webhook outbox is never rebuilt). The ceiling
   and the rebuilds take turns for ``--rounds`` rounds, and each figure is
   the median of its rounds: the machine's speed drifts within a minute, and
   a ceiling measured before all of the rebuilds (or its best of several
   against their single runs) moved the ratios by 0.2x from run to run.
2. Lag: every projection running while events are appended at a steady rate
   (default 500 events/s); the lag (last position - checkpoint) is sampled
   every 20 ms, and the time from an append's commit to all projections
   having it is measured for every append.

    python bench/projections.py [--events 100000] [--rounds 3] [--rate 500] [--seconds 10]
                                [--aes]
    (DATABASE_URL selects a server; default: the embedded PostgreSQL)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

# The repository root replaces this script's folder on the path: a module of
# that folder (bench/http.py) would otherwise shadow the standard library's.
sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from domain import Relationship, create_cipher_key
from domain.samples import Clock, long_history, walk_to
from service.platform.gc_tuning import tune_gc
from service.platform.settings import Settings
from service.projection_runner import ProjectionRunner
from service.relationships.codec import mapper_for
from service.relationships.repository import RelationshipRepository
from service.store.eventstore import EventStore
from service.store.records import NewEvent
from tests.support.database import database_url_for_tests, drop_schema, new_schema_name
from workflows import PHASES

TARGET_EVENTS_PER_S = 20_000
TARGET_RATIO = 0.8
"""Each rebuild's events/s over the ceiling's (read + decode) in the same run."""
BATCH = 1000
CEILING = "ceiling: read log + decode, no writes"


def sample_relationships(events: int) -> list[Relationship]:
    """Half the events in long cultivation histories (meetings, action items,
    feedback), half in short relationships spread over every phase."""
    made: list[Relationship] = []
    total = 0
    while total < events // 2:
        made.append(long_history(min(1000, events // 2 - total + 10)))
        total += made[-1].version
    index = 0
    while total < events:
        phase = PHASES[index % len(PHASES)]
        made.append(walk_to(phase, mentee_id=f"mentee-{index}", mentor_id=f"mentor-{index}"))
        total += made[-1].version
        index += 1
    return made


async def load(repository: RelationshipRepository, relationships: list[Relationship]) -> int:
    """Save them 16 at a time (group commit), return the log's last position."""
    for start in range(0, len(relationships), 16):
        await asyncio.gather(*(repository.save(r) for r in relationships[start : start + 16]))
    return await repository.store.max_position()


async def baseline(store: EventStore, decode: Callable[[Any], Any]) -> float:
    """Events/s of reading the whole log in batches and decoding every event."""
    started = time.perf_counter()
    position, count = 0, 0
    while True:
        records = await store.read_log(position, BATCH)
        if not records:
            break
        for record in records:
            decode(record)
        count += len(records)
        position = records[-1].position
    return count / (time.perf_counter() - started)


async def rebuild_rounds(
    store: EventStore, runner: ProjectionRunner, decode: Callable[[Any], Any], rounds: int
) -> dict[str, float]:
    """Events/s of the ceiling (key ``CEILING``) and of each rebuild, the
    median of ``rounds`` rounds in which they take turns."""
    rates: dict[str, list[float]] = {CEILING: []}
    for _ in range(rounds):
        rates[CEILING].append(await baseline(store, decode))
        for projection in runner.projections:
            if projection.rebuildable:
                report = await runner.rebuild(projection.name)
                rates.setdefault(projection.name, []).append(report.events / report.seconds)
    return {name: statistics.median(values) for name, values in rates.items()}


def steady_events(repository: RelationshipRepository, count: int) -> list[NewEvent]:
    """Events to append during the lag run, prepared beforehand so that making
    them does not compete with the projections for the CPU."""
    events: list[NewEvent] = []
    while len(events) < count:
        relationship = long_history(1000, clock=Clock(step=timedelta(hours=1)))
        events += [repository.to_new_event(e) for e in relationship.collect_events()]  # type: ignore[arg-type]
    return events[:count]


async def lag_under_load(
    store: EventStore, runner: ProjectionRunner, events: list[NewEvent], rate: float
) -> dict[str, Any]:
    """Append ``events`` at ``rate`` per second in ticks of 10 ms; sample the lag."""
    per_tick = max(1, round(rate / 100))
    samples: list[int] = []
    latencies: list[float] = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            lags = await runner.lag()
            samples.append(max(lags.values()))
            await asyncio.sleep(0.02)

    async def projected(position: int, committed: float) -> None:
        await runner.wait_until_projected(None, position, timeout=30)
        latencies.append(time.perf_counter() - committed)

    sampler = asyncio.create_task(sample())
    waiters: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    for tick, first in enumerate(range(0, len(events), per_tick)):
        result = await store.append(events[first : first + per_tick])
        assert result.last_position is not None
        waiters.append(asyncio.create_task(projected(result.last_position, time.perf_counter())))
        pause = started + (tick + 1) * 0.01 - time.perf_counter()
        if pause > 0:
            await asyncio.sleep(pause)
    elapsed = time.perf_counter() - started
    await asyncio.gather(*waiters)
    done.set()
    await sampler
    latencies.sort()
    return {
        "rate": len(events) / elapsed,
        "lag_median": statistics.median(samples),
        "lag_p99": sorted(samples)[int(0.99 * (len(samples) - 1))],
        "lag_max": max(samples),
        "latency_median_ms": statistics.median(latencies) * 1e3,
        "latency_p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1e3,
    }


async def main(events: int, rounds: int, rate: float, seconds: float, aes: bool) -> None:
    tune_gc()  # as `mentorflow serve` and `mentorflow projections rebuild` do
    dsn = database_url_for_tests()
    schema = new_schema_name("bench")
    settings = Settings(cipher_key=create_cipher_key() if aes else None)
    store = await EventStore.open(dsn, schema, pool_size=20)
    try:
        repository = RelationshipRepository(store, mapper_for(settings))
        # Decoded by a repository that saved nothing, as by a process of its
        # own: the one that saves hands its recent events back undecoded.
        reader = RelationshipRepository(store, mapper_for(settings))

        def decode(record: Any) -> Relationship.Event:
            return reader.decode(record).event

        print(f"codec: {'JSON + AES-GCM' if aes else 'JSON'}; database: {dsn.split('@')[-1]}")
        print("preparing events ...", flush=True)
        last = await load(repository, sample_relationships(events))
        steady = steady_events(repository, round(rate * seconds))
        print(f"log: {last:,} events\n")

        runner = ProjectionRunner(store, dsn, decode, batch_size=BATCH)
        rates = await rebuild_rounds(store, runner, decode, rounds)
        base = rates.pop(CEILING)
        print(
            f"{f'rebuild (events/s, medians of {rounds} rounds)':<40} {'events/s':>10}"
            f" {'x ceiling':>10} {f'>= {TARGET_EVENTS_PER_S:,}':>10} {f'>= {TARGET_RATIO:g}x':>8}"
        )
        print("-" * 82)
        print(f"{CEILING:<40} {base:>10,.0f} {1:>10.2f}")
        for name, value in rates.items():
            fast = "ok" if value >= TARGET_EVENTS_PER_S else "MISSED"
            close = "ok" if value / base >= TARGET_RATIO else "MISSED"
            print(f"{name:<40} {value:>10,.0f} {value / base:>10.2f} {fast:>10} {close:>8}")

        await runner.start()
        assert await runner.wait_until_projected(None, last, timeout=60)
        figures = await lag_under_load(store, runner, steady, rate)
        await runner.stop()
        print(
            f"\nlag with all {len(runner.names)} projections running, appends at"
            f" {figures['rate']:,.0f} events/s for {seconds:g} s:"
        )
        print(
            f"  lag (events): median {figures['lag_median']:,.0f}, p99 {figures['lag_p99']:,.0f},"
            f" max {figures['lag_max']:,.0f}"
        )
        print(
            f"  commit to projected (all projections): median"
            f" {figures['latency_median_ms']:.1f} ms, p99 {figures['latency_p99_ms']:.1f} ms"
        )
    finally:
        await store.close()
        await drop_schema(dsn, schema)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of ceiling and rebuilds")
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--aes", action="store_true", help="encrypt payloads (AES-GCM)")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.rounds, args.rate, args.seconds, args.aes))

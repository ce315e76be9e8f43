"""What deciding, applying and loading a relationship cost, as ratios to a baseline.

    python bench/lifecycle.py [--events 1000] [--repeat 15]

Every figure is the best of ``--repeat`` runs, measured in this process next
to a baseline (``json.loads`` of the same stored payloads, which any loader
must at least do), so the ratios hold across machines even when the absolute
numbers do not. The design's target: loading a 1,000-event relationship, at
any version, in under 5 ms.
"""

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from eventsourcing.persistence import Mapper, StoredEvent

sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/http.py would shadow http

import workflows  # noqa: E402
from domain import (  # noqa: E402
    Envelope,
    Relationship,
    create_cipher_key,
    make_mapper,
    rebuild_from_stored,
    take_snapshot,
)
from domain.samples import long_history, walk_to  # noqa: E402

SNAPSHOT_EVERY = 100
TARGET_MS = 5.0


def best_of(repeat: int, function: Callable[[], object], number: int = 1) -> float:
    """Best wall time of one call, in seconds (``number`` calls per run, averaged)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(number):
            function()
        best = min(best, (time.perf_counter() - started) / number)
    return best


class Report:
    def __init__(self, baseline_name: str, baseline: float) -> None:
        self.baseline = baseline
        print(f"baseline: {baseline_name}: {baseline * 1e3:.2f} ms\n")
        print(f"{'measurement':<62} {'time':>12} {'x baseline':>11}")
        print("-" * 87)

    def line(self, name: str, seconds: float, unit: str = "ms", note: str = "") -> None:
        value = seconds * (1e3 if unit == "ms" else 1e6)
        ratio = seconds / self.baseline
        print(f"{name:<62} {value:>9.2f} {unit:<2} {ratio:>10.3f}x {note}")


def per_event_costs(report: Report, repeat: int) -> None:
    """Deciding and applying one event, and what building a machine would cost instead."""
    envelope = Envelope(occurred_at=datetime(2025, 6, 1, tzinfo=UTC))
    relationship = walk_to("cultivation")
    relationship.collect_events()
    facts = relationship.facts()
    feedback = {"from_role": "mentee", "rating": 4, "comment": "helpful"}

    def record_one() -> None:
        relationship.record("feedback.given", feedback, envelope)
        relationship.collect_events()

    number = 2000
    report.line(
        "decide only: workflows.check (compiled table)",
        best_of(repeat, lambda: workflows.check("review.started", facts, {}), number),
        "us",
    )
    report.line(
        "facts + decide: relationship.facts() + check",
        best_of(
            repeat, lambda: workflows.check("review.started", relationship.facts(), {}), number
        ),
        "us",
    )
    report.line(
        "record one event (validate, decide, apply)", best_of(repeat, record_one, number), "us"
    )
    report.line(
        "build a Lifecycle machine (what a request avoids)",
        best_of(repeat, lambda: workflows.machine_at("cultivation"), 200),
        "us",
    )
    machine_check = best_of(
        repeat,
        lambda: workflows.machine_at("cultivation").send("review.started", facts=facts, data={}),
        200,
    )
    report.line("build a machine and send one event through it", machine_check, "us")


def loading_costs(report: Report, relationship_events: list[Any], repeat: int) -> None:
    """Rebuilding the relationship from stored bytes, with and without snapshots."""
    count = len(relationship_events)
    middle = count // 2
    for mapper_name, mapper in [
        ("plain JSON", make_mapper()),
        ("zlib", make_mapper(compress=True)),
        ("AES-GCM + zlib", make_mapper(cipher_key=create_cipher_key(), compress=True)),
    ]:
        stored = [mapper.to_stored_event(event) for event in relationship_events]
        snapshots = _snapshots(mapper, relationship_events)
        runs = max(3, repeat // (5 if "AES" in mapper_name else 1))
        for label, version in (("latest", count), ("middle", middle)):
            load = partial(rebuild_from_stored, mapper, stored, version=version)
            seconds = best_of(runs, load)
            report.line(
                f"load v{version} ({label}), {mapper_name}, all events",
                seconds,
                note=_verdict(seconds),
            )
        for label, version in (("latest", count), ("middle", middle + SNAPSHOT_EVERY // 2)):
            snapshot = snapshots[version // SNAPSHOT_EVERY * SNAPSHOT_EVERY]
            tail = stored[snapshot.originator_version : version]
            load = partial(rebuild_from_stored, mapper, tail, snapshot=snapshot, version=version)
            seconds = best_of(runs, load)
            report.line(
                f"load v{version} ({label}), {mapper_name}, snapshot + {len(tail)} events",
                seconds,
                note=_verdict(seconds),
            )
        print()


def store_loading_costs(report: Report, events: list[Any], repeat: int) -> None:
    """The same loads end to end: from PostgreSQL (embedded, or DATABASE_URL)
    through the service's repository, which keeps a snapshot every 100 events."""
    asyncio.run(_store_loading_costs(report, events, repeat))


async def _store_loading_costs(report: Report, events: list[Any], repeat: int) -> None:
    from service.relationships.repository import RelationshipRepository
    from service.store.eventstore import EventStore
    from tests.support.database import database_url_for_tests, drop_schema

    dsn = database_url_for_tests()
    for mapper_name, mapper in [
        ("plain JSON", make_mapper()),
        ("AES-GCM + zlib", make_mapper(cipher_key=create_cipher_key(), compress=True)),
    ]:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        store = await EventStore.open(dsn, schema)
        try:
            repository = RelationshipRepository(store, mapper, snapshot_every=SNAPSHOT_EVERY)
            for version, snapshot in _snapshots(mapper, events).items():
                chunk = events[version - SNAPSHOT_EVERY : version]
                await store.append([repository.to_new_event(e) for e in chunk])
                await repository.snapshots.save(snapshot)
            stream = events[0].originator_id
            count = len(events)
            raw = await _best_async(repeat, partial(store.read_stream, stream))
            report.line(f"read all {count} rows of the stream, no decoding ({mapper_name})", raw)
            versions: tuple[tuple[str, int | None], ...] = (
                ("latest", None),
                ("middle", count // 2 + SNAPSHOT_EVERY // 2),
            )
            for label, at_version in versions:
                seconds = await _best_async(
                    repeat, partial(repository.load, stream, version=at_version)
                )
                report.line(
                    f"load {label} from PostgreSQL, {mapper_name}", seconds, note=_verdict(seconds)
                )
        finally:
            await store.close()
            await drop_schema(dsn, schema)
    print()


async def _best_async(repeat: int, function: Callable[[], Awaitable[object]]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        await function()
        best = min(best, time.perf_counter() - started)
    return best


def _snapshots(mapper: Mapper[Any], events: list[Any]) -> dict[int, StoredEvent]:
    """A stored snapshot every SNAPSHOT_EVERY versions, as a store would keep them."""
    snapshots: dict[int, StoredEvent] = {}
    relationship = None
    for event in events:
        relationship = event.mutate(relationship)
        assert isinstance(relationship, Relationship)
        if relationship.version % SNAPSHOT_EVERY == 0:
            snapshots[relationship.version] = mapper.to_stored_event(take_snapshot(relationship))
    return snapshots


def _verdict(seconds: float) -> str:
    return "(< 5 ms target)" if seconds * 1e3 < TARGET_MS else "(over 5 ms target)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=15)
    arguments = parser.parse_args()

    relationship = long_history(arguments.events)
    events = list(relationship.collect_events())
    plain = make_mapper()
    payloads = [plain.to_stored_event(event).state for event in events]
    average = sum(map(len, payloads)) / len(payloads)
    print(f"{len(events)} events in cultivation; {average:.0f} bytes per stored payload (plain)")

    baseline = best_of(arguments.repeat, lambda: [json.loads(payload) for payload in payloads])
    report = Report(f"json.loads of the {len(payloads)} plain payloads", baseline)
    per_event_costs(report, arguments.repeat)
    print()
    loading_costs(report, events, arguments.repeat)
    if arguments.events % SNAPSHOT_EVERY == 0:
        store_loading_costs(report, events, arguments.repeat)


if __name__ == "__main__":
    main()

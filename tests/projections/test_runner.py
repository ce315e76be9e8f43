"""The projection runner: exactly-once effect, identical rebuilds, one worker
per projection across processes, lag and read-your-writes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import make_mapper
from domain.samples import long_history, walk_to
from projections import ProjectedEvent, Timeline, all_projections
from service.projection_runner import ProjectionRunner, RebuildProgress
from service.relationships.repository import RelationshipRepository
from service.store.eventstore import EventStore
from service.store.records import NewEvent
from tests.projections.histories import History, build, steps
from tests.projections.support import (
    Counter,
    applied,
    applied_by,
    create_applied_table,
    dump,
    runner_for,
    save_all,
)
from tests.support.database import drop_schema, new_schema_name

pytestmark = pytest.mark.db

REPO = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def fresh_store(dsn: str) -> AsyncIterator[tuple[EventStore, RelationshipRepository]]:
    """A store in a schema of its own (property tests run many examples per test)."""
    schema = new_schema_name()
    store = await EventStore.open(dsn, schema)
    try:
        yield store, RelationshipRepository(store, make_mapper())
    finally:
        await store.close()
        await drop_schema(dsn, schema)


async def append_in_order(repository: RelationshipRepository, history: History) -> int:
    """Append the history one event at a time, in the order it was recorded."""
    for event in history.order:
        await repository.store.append([repository.to_new_event(event)])
    for relationship in history.relationships:
        relationship.collect_events()
    return await repository.store.max_position()


async def wait(runner: ProjectionRunner, position: int, timeout: float = 30) -> None:
    assert await runner.wait_until_projected(None, position, timeout), await runner.lag()


async def assert_matches_aggregates(store: EventStore, history: History) -> None:
    """The read models agree with the aggregates they summarise."""
    summaries = {
        str(r["relationship_id"]): r
        for r in await store.with_connection(
            lambda c: c.fetch("SELECT * FROM relationship_summaries")
        )
    }
    stats = {
        str(r["relationship_id"]): r
        for r in await store.with_connection(
            lambda c: c.fetch("SELECT * FROM phase_stats_relationships")
        )
    }
    for relationship in history.relationships:
        summary, stat = summaries[str(relationship.id)], stats[str(relationship.id)]
        assert (summary["phase"], summary["paused"], summary["version"]) == (
            relationship.phase,
            relationship.paused,
            relationship.version,
        )
        assert summary["mentor_id"] == relationship.mentor_id
        assert summary["meetings_held"] == relationship.meetings_held
        assert set(summary["open_action_items"]) == set(relationship.open_items)
        assert summary["outcome"] == stat["outcome"] == relationship.outcome
        assert (stat["phase"], stat["paused"]) == (relationship.phase, relationship.paused)
        assert summary["phase_entered_at"] == relationship.phase_entered_at[relationship.phase]
    count = await store.with_connection(
        lambda c: c.fetchval("SELECT count(*) FROM timeline_entries")
    )
    assert count == len(history.order)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history_steps=steps(relationships=4, max_steps=80), batch_size=st.integers(1, 25))
async def test_incremental_processing_and_rebuild_give_identical_tables(
    dsn: str, history_steps: list[tuple[int, int, int]], batch_size: int
) -> None:
    history = build(history_steps)
    async with fresh_store(dsn) as (store, repository):
        runner = runner_for(store, dsn, repository, batch_size=batch_size)
        await runner.start()
        try:
            last = await append_in_order(repository, history)  # projected while appended
            await wait(runner, last)
            incremental = await dump(store)
            for name in runner.names:
                report = await runner.rebuild(name, timeout=30)
                assert report.generation == 2 and report.events == last
            assert await dump(store) == incremental
        finally:
            await runner.stop()
        await assert_matches_aggregates(store, history)


async def test_a_crash_after_writing_rows_applies_each_event_exactly_once(
    store: EventStore, dsn: str, repository: RelationshipRepository
) -> None:
    await create_applied_table(store)
    last = await save_all(repository, [walk_to("concluded"), long_history(60)])
    counter = Counter(fail_at=30)
    runner = runner_for(store, dsn, repository, [counter], batch_size=7)
    await runner.start()
    try:
        await wait(runner, last)  # the supervisor retried after the crash
    finally:
        await runner.stop()
    assert counter.failures == 1
    assert (
        runner.registry.get_sample_value(
            "mentorflow_projection_failures_total", {"projection": "counter"}
        )
        == 1
    )
    assert await applied(store) == dict.fromkeys(range(1, last + 1), 1)


async def test_stop_while_a_failed_worker_waits_for_its_reader_stops_it(
    store: EventStore, dsn: str, repository: RelationshipRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stop() landing while a worker whose batch just failed waits for its log
    reader to end must end the worker, not let it restart (it used to: the wait
    swallowed the cancellation, the worker retried, and stop() never returned)."""
    await create_applied_table(store)
    await save_all(repository, [walk_to("refinement")])
    counter = Counter(fail_at=1)
    runner = runner_for(store, dsn, repository, [counter], batch_size=5)
    read_live = runner._read_live
    reader_stopping = asyncio.Event()

    async def slow_to_stop(*args: Any) -> None:
        try:
            await read_live(*args)
        except asyncio.CancelledError:
            reader_stopping.set()
            await asyncio.sleep(0.3)  # still closing something
            raise

    project = runner._project
    runs = 0

    async def counted(*args: Any, **kwargs: Any) -> None:
        nonlocal runs
        runs += 1
        await project(*args, **kwargs)

    monkeypatch.setattr(runner, "_read_live", slow_to_stop)
    monkeypatch.setattr(runner, "_project", counted)
    await runner.start()
    async with asyncio.timeout(30):
        await reader_stopping.wait()  # the batch failed; the worker waits for its reader
    assert counter.failures == 1
    async with asyncio.timeout(10):
        await runner.stop()
    await asyncio.sleep(1)  # longer than the retry delay: a worker that survived would restart
    assert not runner.running and runs == 1


class CrashingTimeline(Timeline):
    """The real timeline, crashing once after its rows are written."""

    def __init__(self, at: int) -> None:
        self.at: int | None = at

    async def handle(self, conn: asyncpg.Connection, batch: Sequence[ProjectedEvent]) -> None:
        await super().handle(conn, batch)
        if self.at is not None and any(event.position == self.at for event in batch):
            self.at = None
            raise RuntimeError("simulated crash")


async def test_after_a_crash_and_a_restart_the_tables_equal_a_rebuild(
    store: EventStore, dsn: str, repository: RelationshipRepository
) -> None:
    await create_applied_table(store)
    last = await save_all(repository, [walk_to("refinement"), long_history(40)])
    counter, timeline = Counter(fail_at=20), CrashingTimeline(at=20)
    crashing = runner_for(store, dsn, repository, [counter, timeline], batch_size=5)
    await crashing.start()
    for _ in range(200):
        if counter.failures and timeline.at is None:
            break
        await asyncio.sleep(0.01)
    await crashing.stop()  # the process "dies" right after the crash
    assert await crashing.checkpoint("counter") < 20
    assert 20 not in await applied(store)  # the crashed batch left nothing

    restarted = runner_for(store, dsn, repository, [Counter(), Timeline()], batch_size=5)
    await restarted.start()
    try:
        await wait(restarted, last)
        assert await applied(store) == dict.fromkeys(range(1, last + 1), 1)
        after_restart = await dump(store, [Timeline()])
        await restarted.rebuild("timeline", timeout=30)
        assert await dump(store, [Timeline()]) == after_restart
    finally:
        await restarted.stop()


async def test_two_runners_never_run_a_projection_together_and_one_takes_over(
    store: EventStore, dsn: str, schema: str, repository: RelationshipRepository
) -> None:
    """Two runners on two stores (two pools), as two processes would have."""
    await create_applied_table(store)
    second_store = await EventStore.open(dsn, schema)
    second_repository = RelationshipRepository(second_store, make_mapper())
    Counter.active = Counter.overlaps = 0
    first = runner_for(store, dsn, repository, [Counter(delay=0.002), *all_projections()])
    second = runner_for(
        second_store, dsn, second_repository, [Counter(delay=0.002), *all_projections()]
    )
    try:
        await asyncio.gather(first.start(), second.start())
        await asyncio.gather(
            *(repo.save(walk_to("concluded")) for repo in [repository, second_repository] * 5)
        )
        last = await store.max_position()
        await wait(first, last)
        for name in first.names:
            assert first.is_leader(name) != second.is_leader(name), name
        assert Counter.overlaps == 0
        assert await applied(store) == dict.fromkeys(range(1, last + 1), 1)
        assert len(await applied_by(store)) == 1

        leader, standby = (first, second) if first.is_leader("counter") else (second, first)
        await leader.stop()
        await save_all(repository, [long_history(30)])
        last = await store.max_position()
        await wait(standby, last)
        assert all(standby.is_leader(name) for name in standby.names)
        assert Counter.overlaps == 0
        assert await applied(store) == dict.fromkeys(range(1, last + 1), 1)
        assert len(await applied_by(store)) == 2
    finally:
        await asyncio.gather(first.stop(), second.stop())
        await second_store.close()


async def test_a_killed_process_holding_the_lock_is_taken_over(
    store: EventStore, dsn: str, schema: str, repository: RelationshipRepository
) -> None:
    await create_applied_table(store)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.projections.worker_process",
        dsn,
        schema,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    local = runner_for(store, dsn, repository, [Counter()])
    try:
        assert process.stdout is not None
        assert await asyncio.wait_for(process.stdout.readline(), 60) == b"leading\n"
        await local.start()
        last = await save_all(repository, [walk_to("cultivation")])
        await wait(local, last)  # projected by the other process
        assert not local.is_leader("counter")
        (other_backend,) = await applied_by(store)

        process.kill()  # no clean shutdown: the server notices the dead connection
        await process.wait()
        last = await save_all(repository, [walk_to("concluded")])
        await wait(local, last)
        assert local.is_leader("counter")
        assert await applied(store) == dict.fromkeys(range(1, last + 1), 1)
        assert other_backend in await applied_by(store) and len(await applied_by(store)) == 2
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await local.stop()


async def test_lag_is_exposed_per_projection(
    store: EventStore, dsn: str, repository: RelationshipRepository
) -> None:
    runner = runner_for(store, dsn, repository)
    last = await save_all(repository, [walk_to("establishment")])
    assert await runner.lag() == dict.fromkeys(runner.names, last)
    await runner.refresh_metrics()
    sample = runner.registry.get_sample_value
    assert sample("mentorflow_projection_lag_events", {"projection": "timeline"}) == last
    await runner.start()
    try:
        await wait(runner, last)
        assert await runner.refresh_metrics() == dict.fromkeys(runner.names, 0)
        assert sample("mentorflow_projection_lag_events", {"projection": "timeline"}) == 0
        assert (
            sample("mentorflow_projection_checkpoint_position", {"projection": "timeline"}) == last
        )
        assert sample("mentorflow_projection_leader", {"projection": "timeline"}) == 1
        assert sample("mentorflow_projection_events_total", {"projection": "timeline"}) == last
    finally:
        await runner.stop()
    assert sample("mentorflow_projection_leader", {"projection": "timeline"}) == 0


async def test_wait_until_projected_gives_read_your_writes(
    store: EventStore, dsn: str, repository: RelationshipRepository, runner: ProjectionRunner
) -> None:
    relationship = walk_to("cultivation")
    saved = await repository.save(relationship)
    position = saved.events[-1].position
    assert await runner.wait_until_projected("timeline", position, timeout=10)
    count = await store.with_connection(
        lambda c: c.fetchval(
            "SELECT count(*) FROM timeline_entries WHERE relationship_id = $1", relationship.id
        )
    )
    assert count == relationship.version


async def test_a_waiter_where_the_worker_runs_queries_nothing(
    store: EventStore, dsn: str, repository: RelationshipRepository, runner: ProjectionRunner
) -> None:
    """Woken by the worker's commits, a waiter in the process that runs the
    worker never reads the checkpoint from the database (the risk worker waits
    so on every pass, and so does a request with ``?min_position=``): before,
    it read it on every wake-up, every few milliseconds while it waited."""
    await wait(runner, await save_all(repository, [walk_to("establishment")]))
    reads = 0
    checkpoint = runner.checkpoint

    async def counted(name: str) -> int:
        nonlocal reads
        reads += asyncio.current_task() is waiter  # not the runner's metrics task
        return await checkpoint(name)

    runner.checkpoint = counted  # type: ignore[method-assign]  # counts the reads
    coming = await store.max_position() + 1  # positions are gap-free
    waiter = asyncio.create_task(runner.wait_until_projected("timeline", coming, timeout=10))
    await asyncio.sleep(0.4)  # the waiter waits, with nothing to project
    assert not waiter.done()
    assert await save_all(repository, [walk_to("reflection")]) >= coming
    assert await waiter
    assert reads == 0


async def test_wait_until_projected_times_out_when_nothing_runs(
    store: EventStore, dsn: str, repository: RelationshipRepository
) -> None:
    runner = runner_for(store, dsn, repository)
    last = await save_all(repository, [walk_to("reflection")])
    assert not await runner.wait_until_projected(None, last, timeout=0.2)
    with pytest.raises(KeyError):
        await runner.wait_until_projected("nope", last, timeout=0.1)


async def test_rebuild_replays_from_zero_with_progress(
    store: EventStore, dsn: str, repository: RelationshipRepository
) -> None:
    last = await save_all(repository, [long_history(250), walk_to("concluded")])
    runner = runner_for(store, dsn, repository, batch_size=50)
    await runner.start()
    await wait(runner, last)
    await runner.stop()
    before = await dump(store)

    seen: list[RebuildProgress] = []
    report = await runner.rebuild("timeline", seen.append, timeout=30)
    assert report.generation == 2 and report.events == last == report.position
    positions = [p.position for p in seen]
    assert positions == sorted(positions) and positions[-1] == last and len(positions) > 3
    assert seen[-1].fraction == 1.0
    assert await runner.checkpoint("timeline") == last
    assert await dump(store) == before


async def test_rebuild_while_appending_and_running(
    store: EventStore, dsn: str, repository: RelationshipRepository, runner: ProjectionRunner
) -> None:
    await save_all(repository, [long_history(150)])

    async def keep_appending() -> None:
        for phase in ("reflection", "identification", "cultivation", "concluded") * 3:
            await repository.save(walk_to(phase))

    appending = asyncio.create_task(keep_appending())
    reports = await asyncio.gather(*(runner.rebuild(name, timeout=30) for name in runner.names))
    await appending
    assert all(report.generation == 2 for report in reports)
    last = await store.max_position()
    await wait(runner, last)
    live = await dump(store)
    await runner.stop()
    for name in runner.names:
        await runner.rebuild(name, timeout=30)
    assert await dump(store) == live


async def test_a_rebuild_from_another_process_builds_beside_the_running_worker_and_swaps(
    store: EventStore, dsn: str, repository: RelationshipRepository, runner: ProjectionRunner
) -> None:
    last = await save_all(repository, [long_history(120)])
    await wait(runner, last)
    before = await dump(store)
    cli_store = await EventStore.open(dsn, store.schema)
    try:
        cli = runner_for(cli_store, dsn, RelationshipRepository(cli_store, make_mapper()))
        seen: list[RebuildProgress] = []
        report = await cli.rebuild("relationship_summary", seen.append, timeout=30)
    finally:
        await cli_store.close()
    assert seen[-1].position >= last and report.generation == 2
    assert await dump(store) == before
    assert await runner.checkpoint("relationship_summary") >= last  # the worker went on
    more = await save_all(repository, [walk_to("concluded")])
    await wait(runner, more)  # from the new generation's checkpoint
    assert await dump(store) != before


async def test_events_of_other_topics_are_passed_over(
    store: EventStore, dsn: str, repository: RelationshipRepository, runner: ProjectionRunner
) -> None:
    await store.append([NewEvent(uuid4(), 1, "elsewhere:Thing", b'{"a": 1}', {"kind": "x"})])
    last = await save_all(repository, [walk_to("identification")])
    await wait(runner, last)
    assert (await dump(store))["timeline_entries"] and await runner.lag() == dict.fromkeys(
        runner.names, 0
    )


async def test_a_rebuild_ends_even_when_the_last_events_were_deleted(
    store: EventStore, dsn: str, repository: RelationshipRepository
) -> None:
    relationship = walk_to("concluded")
    await save_all(repository, [relationship])
    await store.with_connection(
        lambda c: c.execute(
            "DELETE FROM events WHERE version > 12 AND stream_id = $1", relationship.id
        )
    )
    runner = runner_for(store, dsn, repository)
    report = await runner.rebuild("timeline", timeout=10)
    assert report.events == 12 and await runner.checkpoint("timeline") == 12

    deleted = long_history(40)
    await save_all(repository, [deleted])
    await store.with_connection(
        lambda c: c.execute("DELETE FROM events WHERE version > 2 AND stream_id = $1", deleted.id)
    )
    small = runner_for(store, dsn, repository, batch_size=5)  # more deleted than a batch
    report = await small.rebuild("timeline", timeout=10)
    stored = await store.with_connection(lambda c: c.fetchval("SELECT max(position) FROM events"))
    assert await store.max_position() - stored > small.batch_size  # handed out, then deleted
    assert await small.checkpoint("timeline") == report.position == report.events == stored

"""No event can stop a read model for good, nor a rebuild empty one: a failing
event is named (log, ``failures()``, metrics) while the other projections go
on, and a rebuild builds beside the serving tables and swaps only when done."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
from collections.abc import Sequence

import asyncpg
import pytest

from domain.samples import long_history, walk_to
from projections import PhaseStatistics, ProjectedEvent, RelationshipSummaries, Timeline, timeline
from service import auditor
from service.platform.settings import Settings
from service.projection_runner import ProjectionRunner, RebuildFailed, shadow_schema
from service.relationships.repository import RelationshipRepository
from service.store.eventstore import EventStore
from service.webhooks.outbox import WebhookOutbox
from tests.projections.support import dump, runner_for, save_all

pytestmark = pytest.mark.db


class BrokenTimeline(Timeline):
    """The real timeline, failing on the event at ``position`` while ``broken``."""

    def __init__(self, position: int) -> None:
        self.position = position
        self.broken = True
        self.attempts = 0

    async def handle(self, conn: asyncpg.Connection, batch: Sequence[ProjectedEvent]) -> None:
        await super().handle(conn, batch)
        if self.broken and any(event.position == self.position for event in batch):
            self.attempts += 1
            raise ValueError(f"cannot hold the event at {self.position}")


class BlockedTimeline(Timeline):
    """The real timeline, waiting at ``position`` until released."""

    def __init__(self, position: int) -> None:
        self.position = position
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, conn: asyncpg.Connection, batch: Sequence[ProjectedEvent]) -> None:
        await super().handle(conn, batch)
        if any(event.position == self.position for event in batch):
            self.reached.set()
            await self.release.wait()


async def index_names(store: EventStore, table: str) -> list[tuple[str, str]]:
    """The table's indexes (name and definition) and constraints (name and definition)."""
    rows = await store.with_connection(
        lambda c: c.fetch(
            "SELECT indexname AS name, indexdef AS definition FROM pg_indexes"
            " WHERE schemaname = $1 AND tablename = $2"
            " UNION ALL SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = to_regclass(quote_ident($1) || '.' || quote_ident($2))",
            store.schema,
            table,
        )
    )
    return sorted((row["name"], row["definition"]) for row in rows)


async def schema_exists(store: EventStore, schema: str) -> bool:
    found: bool = await store.with_connection(
        lambda c: c.fetchval("SELECT to_regnamespace($1) IS NOT NULL", schema)
    )
    return found


async def test_a_failing_event_is_named_counted_and_recorded_while_the_others_go_on(
    store: EventStore,
    dsn: str,
    repository: RelationshipRepository,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = await save_all(repository, [walk_to("cultivation")])
    broken = BrokenTimeline(first + 3)
    runner = runner_for(
        store, dsn, repository, [RelationshipSummaries(), broken, PhaseStatistics()], batch_size=50
    )
    caplog.set_level(logging.ERROR, logger="service.projection_runner")
    await runner.start()
    try:
        last = await save_all(repository, [walk_to("concluded")])
        for name in ("relationship_summary", "phase_statistics"):
            assert await runner.wait_until_projected(name, last, timeout=30), await runner.lag()

        async with asyncio.timeout(30):  # against a hang only
            while True:
                if await runner.failures():
                    break
                await asyncio.sleep(0.05)
        (failure,) = await runner.failures()
        assert (failure.projection, failure.position) == ("timeline", first + 3)
        assert "ValueError: cannot hold the event" in failure.error
        assert await runner.checkpoint("timeline") == first + 2  # those before it are kept
        assert any(
            "projection timeline failed at position" in r.getMessage()
            and str(first + 3) in r.getMessage()
            for r in caplog.records
        ), caplog.text
        await runner.refresh_metrics()
        sample = runner.registry.get_sample_value
        failures = sample("mentorflow_projection_failures_total", {"projection": "timeline"})
        assert failures is not None and failures >= 1
        assert sample("mentorflow_projection_stuck_position", {"projection": "timeline"}) == (
            first + 3
        )
        assert (
            sample("mentorflow_projection_stuck_position", {"projection": "phase_statistics"}) == 0
        )

        broken.broken = False  # fixed (a release, say): the retry moves past it
        assert await runner.wait_until_projected("timeline", last, timeout=60)
        assert await runner.failures() == []
        await runner.refresh_metrics()
        assert sample("mentorflow_projection_stuck_position", {"projection": "timeline"}) == 0
    finally:
        await runner.stop()
    assert not runner.running


async def test_a_failed_rebuild_leaves_the_serving_tables_and_the_command_says_where(
    store: EventStore,
    dsn: str,
    schema: str,
    repository: RelationshipRepository,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    last = await save_all(repository, [long_history(120), walk_to("concluded")])
    runner = runner_for(store, dsn, repository, batch_size=25)
    await runner.start()
    try:
        assert await runner.wait_until_projected(None, last, timeout=30)
    finally:
        await runner.stop()
    before = await dump(store)
    tables = [table for projection in runner.projections for table in projection.tables]
    indexes = [await index_names(store, table) for table in tables]

    handle = Timeline.handle

    async def failing(
        self: Timeline, conn: asyncpg.Connection, batch: Sequence[ProjectedEvent]
    ) -> None:
        if any(event.position == 77 for event in batch):
            raise ValueError("no room for this one")
        await handle(self, conn, batch)

    monkeypatch.setattr(Timeline, "handle", failing)
    with pytest.raises(RebuildFailed) as raised:
        await runner.rebuild("timeline", timeout=30)
    assert raised.value.position == 77
    assert await dump(store) == before
    assert await runner.checkpoint("timeline") == last
    assert not await schema_exists(store, shadow_schema(schema, "timeline"))

    err = io.StringIO()
    settings = Settings(database_url=dsn, db_schema=schema)
    assert await auditor.rebuild(settings, "timeline", err=err) == 1
    assert (
        "mentorflow: rebuild of timeline failed at position 77: ValueError: no room for this one;"
        " the serving tables are unchanged"
    ) in err.getvalue()
    assert await dump(store) == before

    monkeypatch.setattr(Timeline, "handle", handle)
    err = io.StringIO()
    assert await auditor.rebuild(settings, err=err) == 0, err.getvalue()
    assert await dump(store) == before
    # the indexes and constraints as migrations made them (a rebuild builds them after its load)
    assert [await index_names(store, table) for table in tables] == indexes
    for name in runner.names:
        assert not await schema_exists(store, shadow_schema(schema, name))


async def test_reads_during_a_rebuild_are_served_by_the_old_tables_kept_up_to_date(
    store: EventStore, dsn: str, repository: RelationshipRepository
) -> None:
    last = await save_all(repository, [long_history(80)])
    running = runner_for(store, dsn, repository, [Timeline()], batch_size=10)
    await running.start()
    try:
        assert await running.wait_until_projected(None, last, timeout=30)
        before = await dump(store, [Timeline()])
        blocked = BlockedTimeline(40)
        rebuilder = runner_for(store, dsn, repository, [blocked], batch_size=10)
        rebuild = asyncio.create_task(rebuilder.rebuild("timeline", timeout=60))
        async with asyncio.timeout(30):
            await blocked.reached.wait()
        assert await dump(store, [Timeline()]) == before  # not emptied, not half built

        more = await save_all(repository, [walk_to("establishment")])
        assert await running.wait_until_projected("timeline", more, timeout=30)
        served = await dump(store, [Timeline()])
        assert len(served["timeline_entries"]) == more  # the serving table kept up

        blocked.release.set()
        report = await rebuild
        assert report.generation == 2 and report.position >= more
        assert await dump(store, [Timeline()]) == served

        after = await save_all(repository, [walk_to("cultivation")])
        assert await running.wait_until_projected("timeline", after, timeout=30)
        assert len((await dump(store, [Timeline()]))["timeline_entries"]) == after
    finally:
        await running.stop()


async def test_the_webhook_outbox_is_never_rebuilt(
    store: EventStore, dsn: str, repository: RelationshipRepository
) -> None:
    runner: ProjectionRunner = runner_for(store, dsn, repository, [WebhookOutbox()])
    with pytest.raises(ValueError, match="history"):
        await runner.rebuild("webhook_outbox")


async def test_rows_breaking_a_unique_index_fail_the_rebuild_and_keep_the_tables(
    store: EventStore,
    dsn: str,
    schema: str,
    repository: RelationshipRepository,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rebuild builds its unique indexes after its load: rows that break
    one (two timeline entries at one position) fail the rebuild there."""
    last = await save_all(repository, [walk_to("concluded"), walk_to("cultivation")])
    runner = runner_for(store, dsn, repository)
    await runner.start()
    try:
        assert await runner.wait_until_projected(None, last, timeout=30)
    finally:
        await runner.stop()
    await store.with_connection(
        lambda c: c.execute("CREATE UNIQUE INDEX timeline_at ON timeline_entries (position)")
    )
    before = await dump(store)
    row_of = timeline.timeline_row

    def misplaced(event: ProjectedEvent) -> timeline.TimelineRow:
        return dataclasses.replace(row_of(event), position=1)

    monkeypatch.setattr(timeline, "timeline_row", misplaced)
    with pytest.raises(RebuildFailed) as raised:
        await runner.rebuild("timeline", timeout=30)
    assert isinstance(raised.value.error, asyncpg.UniqueViolationError)
    assert await dump(store) == before
    assert not await schema_exists(store, shadow_schema(schema, "timeline"))

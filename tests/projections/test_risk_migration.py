"""Migration 0080 on a store of an earlier release: the summaries get the
columns the at-risk rules read, and are projected again from the log."""

from __future__ import annotations

from uuid import uuid4

import asyncpg
import pytest

from domain import make_mapper
from domain.samples import walk_to
from projections.summaries import NAME
from service.relationships.repository import RelationshipRepository
from service.store.eventstore import EventStore
from service.store.migrations import available_migrations
from tests.projections.support import runner_for
from tests.support.database import drop_schema, new_schema_name

pytestmark = pytest.mark.db


async def test_summaries_are_projected_again_with_the_risk_columns(dsn: str) -> None:
    schema = new_schema_name()
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(f"CREATE SCHEMA {schema}; SET LOCAL search_path TO {schema}")
            earlier = [m for m in available_migrations() if m.version < 80]
            for migration in earlier:
                await conn.execute(migration.sql)
            await conn.execute(
                "CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await conn.execute(
                "INSERT INTO schema_migrations (version, name)"
                " SELECT v, 'earlier' FROM unnest($1::int[]) AS v",
                [m.version for m in earlier],
            )
            # a summary and checkpoints as an earlier release left them
            await conn.execute(
                "INSERT INTO relationship_summaries VALUES ($1, 1, 1, 1, 'm', NULL, NULL, NULL,"
                " NULL, 'reflection', false, NULL, NULL, now(), now(), now(), NULL, NULL, NULL,"
                " 0, 0, '{}', NULL, 0, 0, NULL)",
                uuid4(),
            )
            await conn.execute(
                "INSERT INTO tracking (name, position) VALUES"
                " ('projection.relationship_summary.1', 1), ('projection.timeline.1', 1)"
            )
    finally:
        await conn.close()
    store = await EventStore.open(dsn, schema)
    try:
        names = await store.with_connection(
            lambda c: c.fetch("SELECT name FROM tracking ORDER BY name")
        )
        assert [r["name"] for r in names] == ["projection.timeline.1"]
        rows = await store.with_connection(
            lambda c: c.fetchval("SELECT count(*) FROM relationship_summaries")
        )
        assert rows == 0

        repository = RelationshipRepository(store, make_mapper())
        relationship = walk_to("cultivation")
        saved = await repository.save(relationship)
        runner = runner_for(store, dsn, repository)
        await runner.start()
        try:
            assert await runner.wait_until_projected(NAME, saved.events[-1].position, 10)
        finally:
            await runner.stop()
        row = await store.with_connection(
            lambda c: c.fetchrow(
                "SELECT phase, phase_entered_position, meeting_clock_position, risk_codes"
                " FROM relationship_summaries"
            )
        )
        assert row["phase"] == "cultivation" and row["risk_codes"] == []
        assert row["phase_entered_position"] is not None
        assert row["meeting_clock_position"] == saved.events[-1].position  # the meeting
    finally:
        await store.close()
        await drop_schema(dsn, schema)

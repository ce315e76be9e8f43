"""A read model's row written and read back is the row that was written,
whatever its values: a batch goes as one JSON array that PostgreSQL turns
into rows (projections.sql.json_rows), so dates, instants at the ends of
Python's range, offsets, quotes and backslashes in text and in jsonb keys,
and the driver's own UUIDs must all survive that."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import TypeVar

import pytest
from asyncpg.pgproto.pgproto import UUID as DriverUUID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections import timeline
from projections.sql import aware, json_rows
from projections.summaries_fold import Summary
from projections.summaries_queries import load_rows, upsert_rows
from service.store.eventstore import EventStore

pytestmark = pytest.mark.db

texts = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=12
)
offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
instants = st.one_of(
    st.sampled_from([datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)]),
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=offsets),
)
dates = st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))
counts = st.integers(0, 2**31 - 1)
positions = st.integers(1, 2**63 - 1)
ids = st.uuids().flatmap(lambda u: st.sampled_from([u, DriverUUID(u.bytes)]))
"""The standard class, or the driver's (ids read from the log in a rebuild)."""
_opened = itertools.count(1)
"""Opening positions are unique in the table, which outlives one example."""

T = TypeVar("T")


examples = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
"""Each example writes to the database: fewer than hypothesis's default."""


@st.composite
def summaries(draw: st.DrawFn) -> Summary:
    def maybe(strategy: st.SearchStrategy[T]) -> T | None:
        return draw(st.none() | strategy)

    return Summary(
        relationship_id=draw(st.uuids()),
        opened_position=draw(positions),
        version=draw(positions),
        last_position=draw(positions),
        mentee_id=draw(texts),
        mentee_name=maybe(texts),
        program_id=maybe(texts),
        predecessor_id=maybe(ids),
        mentor_id=maybe(texts),
        phase=draw(texts),
        paused=draw(st.booleans()),
        paused_since=maybe(instants),
        resumed_at=maybe(instants),
        opened_at=draw(instants),
        phase_entered_at=draw(instants),
        last_event_at=draw(instants),
        established_at=maybe(instants),
        cadence=maybe(texts),
        last_meeting_at=maybe(instants),
        meetings_held=draw(counts),
        meetings_since_established=draw(counts),
        open_action_items=draw(st.dictionaries(texts, st.none() | texts, max_size=3)),
        earliest_open_due=maybe(dates),
        concerns=draw(counts),
        open_high_concerns=draw(counts),
        outcome=maybe(texts),
        phase_entered_position=maybe(positions),
        meeting_clock_at=maybe(instants),
        meeting_clock_position=maybe(positions),
        action_item_positions=draw(st.dictionaries(texts, positions, max_size=3)),
        open_concerns=draw(
            st.dictionaries(
                texts,
                st.fixed_dictionaries(
                    {"severity": texts, "raised_at": texts, "position": positions}
                ),
                max_size=2,
            )
        ),
        paused_position=maybe(positions),
        expected_resume=maybe(dates),
        risk_codes=draw(st.lists(texts, max_size=3)),
        deliverables=draw(st.dictionaries(texts, st.none() | texts, max_size=3)),
        earliest_deliverable_due=maybe(dates),
        deliverables_position=maybe(positions),
    )


@examples
@given(rows=st.lists(summaries(), min_size=1, max_size=4), changed=st.data())
async def test_rows_read_back_as_written(
    store: EventStore, rows: list[Summary], changed: st.DataObject
) -> None:
    for row in rows:
        opened = next(_opened)
        fresh = uuid.uuid4()  # the driver's class every other time, as a rebuild has it
        row.relationship_id = DriverUUID(fresh.bytes) if opened % 2 else fresh
        row.opened_position = opened
    async with store.pool.acquire() as conn:
        await upsert_rows(conn, rows)
        assert await load_rows(conn, [row.relationship_id for row in rows]) == {
            row.relationship_id: row for row in rows
        }
        again = [changed.draw(summaries()) for _ in rows]  # the same ids, new values
        for row, new in zip(rows, again, strict=True):
            new.relationship_id, new.opened_position = row.relationship_id, row.opened_position
        await upsert_rows(conn, again)
        loaded = await load_rows(conn, [row.relationship_id for row in again])
    assert loaded == {row.relationship_id: row for row in again}
    for row in again:  # instants come back aware, whatever offset they were written with
        assert loaded[row.relationship_id].opened_at.tzinfo is not None


actors: st.SearchStrategy[dict[str, str] | None] = (
    st.none() | st.fixed_dictionaries({"id": texts, "role": texts}) | st.just({})
)


@st.composite
def timeline_rows(draw: st.DrawFn) -> timeline.TimelineRow:
    def maybe(strategy: st.SearchStrategy[T]) -> T | None:
        return draw(st.none() | strategy)

    return timeline.TimelineRow(
        relationship_id=draw(ids),
        version=draw(positions),
        position=draw(positions),
        event_id=draw(ids),
        type=draw(texts),
        occurred_at=draw(instants),
        recorded_at=draw(instants),
        actor=draw(actors),
        source=maybe(texts),
        correlation_id=maybe(texts),
        causation_id=maybe(texts),
        from_phase=maybe(texts),
        to_phase=maybe(texts),
    )


@examples
@given(rows=st.lists(timeline_rows(), min_size=1, max_size=4))
async def test_timeline_rows_read_back_as_written(
    store: EventStore, rows: list[timeline.TimelineRow]
) -> None:
    stream = uuid.uuid4()
    for version, row in enumerate(rows, 1):  # one relationship's versions, in order
        row.relationship_id, row.version = stream, version
    async with store.pool.acquire() as conn:
        await conn.execute(timeline._INSERT, json_rows(rows, timeline._INSTANTS))
        read = await conn.fetch(timeline._SELECT, stream, 0, len(rows) + 1)
    assert [timeline.TimelineRow(*map(aware, row)) for row in read] == rows

"""Every projection is total over what the service accepts.

Events are drawn across the accepted space: extreme dates and date-times
(years 1 and 9999, UTC offsets of ±23:59), long and unusual Unicode (maximal
lengths, astral planes, right-to-left text, combining marks), empty and long
lists. Candidates are made the way the service makes events (bodies checked
like the HTTP layer checks them, envelopes through ``parse_envelope``, data
through ``Relationship.open`` / ``record``) and only those accepted are kept,
so the test follows the validator when it tightens. Each projection then runs
over them incrementally and by rebuild: both must succeed and give identical
tables, and the read queries must answer from those tables.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, cast
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import DomainError, Relationship, parse_envelope
from domain.samples import Clock, long_history, walk_to
from projections import all_projections
from service.http.requests import MAX_BODY, _unstorable_text
from service.relationships.read_models import ReadModels
from service.relationships.repository import RelationshipRepository
from service.webhooks.outbox import WebhookOutbox
from tests.projections import histories
from tests.projections.support import decoder, dump, runner_for, save_all
from tests.projections.test_runner import fresh_store

pytestmark = pytest.mark.db

ASTRAL = "\U0001d518"  # MATHEMATICAL FRAKTUR CAPITAL U: four bytes in UTF-8
OFFSETS = [timedelta(hours=23, minutes=59), -timedelta(hours=23, minutes=59), timedelta(0)]
EXTREME_INSTANTS = [
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(1, 1, 1, 23, 59, tzinfo=timezone(OFFSETS[0])),  # 0001-01-01T00:00Z
    datetime(1, 1, 1, tzinfo=timezone(OFFSETS[1])),
    datetime(1, 1, 1, tzinfo=timezone(OFFSETS[0])),  # the year 0 in UTC
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(9999, 12, 31, 0, 0, tzinfo=timezone(OFFSETS[1])),  # 9999-12-31T23:59Z
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(OFFSETS[1])),  # the year 10000 in UTC
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(OFFSETS[0])),
]
instants = st.one_of(
    st.sampled_from(EXTREME_INSTANTS),
    st.datetimes(
        timezones=st.builds(
            timezone,
            st.timedeltas(min_value=OFFSETS[1], max_value=OFFSETS[0]).map(
                lambda d: timedelta(minutes=d // timedelta(minutes=1))
            ),
        )
    ),
).map(lambda moment: moment.isoformat())
dates = st.one_of(
    st.sampled_from([date.min, date.max, date(1, 1, 2), date(9999, 12, 30)]), st.dates()
).map(date.isoformat)

UNUSUAL = [
    "",
    " ",
    "שלום, עולם",  # right to left
    "\u202eevil\u202c",  # bidirectional override
    "e\u0301\u0302\u0303\u0304" * 40,  # a stack of combining marks
    "👩\u200d👩\u200d👧\u200d👦" * 10,  # a family: astral code points joined
    "\ufeffbom",
    "a\x00b",  # the HTTP layer refuses it
    "\ud800",  # a lone surrogate: refused too
    "'; DROP TABLE timeline_entries; --",
    '{"json": [1, 2]}',
]
texts = st.one_of(
    st.sampled_from(UNUSUAL),
    st.sampled_from([100, 199, 200, 201, 500, 5000, 15_000, 20_000, 20_001]).flatmap(
        lambda n: st.sampled_from(["x" * n, ASTRAL * n, ("ab\u0301" * n)[:n]])
    ),
    st.text(max_size=40),
)

_ENDPOINT = (
    "INSERT INTO webhook_endpoints (id, url, event_types, secret, created_position)"
    " VALUES ($1, 'https://receiver.example/hook', ARRAY['*'], 'not-a-secret', 0)"
)
DATE_KEYS = frozenset({"due_date", "target_date", "start_date", "end_date", "expected_resume"})
DATETIME_KEYS = frozenset({"held_at", "met_at", "scheduled_for"})


def http_accepts(body: dict[str, Any]) -> bool:
    """What the HTTP layer refuses before the domain sees it: text PostgreSQL
    cannot store, bodies over the size limit."""
    if list(_unstorable_text(body, "")):
        return False
    return len(json.dumps(body, ensure_ascii=False).encode()) <= MAX_BODY


def mutate(value: Any, key: str, data: st.DataObject) -> Any:
    """Some of a plausible body's values replaced by extreme ones."""
    if isinstance(value, dict):
        return {k: mutate(v, k, data) for k, v in value.items()}
    if isinstance(value, list):
        items = [mutate(item, key, data) for item in value]
        size = data.draw(st.sampled_from(["same", "same", "empty", "long"]))
        if size == "empty":
            return []
        if size == "long" and items:
            return [items[0] if isinstance(items[0], dict) else f"{items[0]}{n}" for n in range(50)]
        return items
    if not isinstance(value, str) or data.draw(st.integers(0, 2)) != 0:
        return value
    if key in DATE_KEYS:
        return data.draw(dates)
    if key in DATETIME_KEYS:
        return data.draw(instants)
    return data.draw(texts)


def envelope_body(data: st.DataObject, now: datetime, choice: int) -> dict[str, Any]:
    body: dict[str, Any] = {"occurred_at": now.isoformat()}
    if data.draw(st.integers(0, 2)) == 0:
        body["occurred_at"] = data.draw(instants)
    role = "mentor" if choice % 3 == 0 else "mentee"
    body["actor"] = {"id": data.draw(st.one_of(st.just(f"{role}-1"), texts)), "role": role}
    if data.draw(st.booleans()):
        body["correlation_id"] = data.draw(texts)
        body["causation_id"] = data.draw(texts)
    return body


def accepted(*bodies: dict[str, Any]) -> bool:
    return all(http_accepts(body) for body in bodies)


def opened(data: st.DataObject, index: int) -> Relationship:
    plain = {"mentee_id": f"mentee-{index}", "program_id": f"program-{index % 2}"}
    candidate = mutate({**plain, "mentee_name": "Ada"}, "", data)
    for body, envelope in (
        (candidate, envelope_body(data, histories.START, index)),
        (plain, {"occurred_at": histories.START.isoformat()}),
    ):
        if not accepted(body, envelope):
            continue
        try:
            return Relationship.open(
                body, parse_envelope(envelope, source="tests", now=histories.START)
            )
        except DomainError:
            continue
    raise AssertionError("the plain opening is always accepted")


def record(
    relationship: Relationship, choice: int, now: datetime, data: st.DataObject
) -> Relationship.Event | None:
    """One step as ``histories`` takes it, with extreme values where accepted."""
    picked = histories._forward(relationship, choice) if choice % 10 < 6 else None
    if picked is None:
        event_type = histories._random(relationship, choice)
        if event_type is None:
            return None
        picked = event_type, None
    event_type, plain = picked
    if plain is None:
        plain = histories._BUILDERS[event_type](relationship, choice, now)
    candidate = None if plain is None else mutate(plain, "", data)
    source = data.draw(st.sampled_from(["tests", ASTRAL * 100]))
    for body, envelope in (
        (candidate, envelope_body(data, now, choice)),
        (plain, {"occurred_at": now.isoformat()}),
    ):
        if not accepted(body or {}, envelope):
            continue
        try:
            return relationship.record(
                event_type, body, parse_envelope(envelope, source=source, now=now)
            )
        except DomainError:
            continue
    return None


@settings(
    max_examples=int(os.environ.get("MENTORFLOW_TOTALITY_EXAMPLES", "12")),  # more to hunt
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.data(),
    history_steps=histories.steps(relationships=3, max_steps=60),
    batch_size=st.integers(1, 20),
)
async def test_every_projection_is_total_and_a_rebuild_gives_identical_tables(
    dsn: str, data: st.DataObject, history_steps: list[tuple[int, int, int]], batch_size: int
) -> None:
    made = [opened(data, index) for index in range(3)]
    order = [cast(Relationship.Event, r.pending_events[0]) for r in made]
    now = histories.START
    for index, choice, hours in history_steps:
        now += timedelta(hours=hours)
        event = record(made[index], choice, now, data)
        if event is not None:
            order.append(event)

    async with fresh_store(dsn) as (store, repository):
        for event in order:
            await store.append([repository.to_new_event(event)])
        last = await store.max_position()
        await store.with_connection(lambda conn: conn.execute(_ENDPOINT, uuid4()))
        projections = [*all_projections(), WebhookOutbox()]
        runner = runner_for(store, dsn, repository, projections, batch_size=batch_size)
        await runner.start()
        try:
            projected = await runner.wait_until_projected(None, last, timeout=60)
            assert projected, (await runner.failures(), await runner.lag())
        finally:
            await runner.stop()
        assert await runner.failures() == []
        incremental = await dump(store, projections)
        assert incremental["webhook_messages"]  # every event, to an endpoint of every type
        for projection in projections:
            if projection.rebuildable:
                await runner.rebuild(projection.name, timeout=60)
        assert await dump(store, projections) == incremental
        await read_everything(repository, runner, [r.id for r in made])


async def read_everything(repository: RelationshipRepository, runner: Any, ids: list[UUID]) -> None:
    """The read queries answer from the tables (at-risk rules included)."""
    for clock in (lambda: datetime.now(UTC), lambda: datetime(9999, 12, 31, tzinfo=UTC)):
        reads = ReadModels(repository.store, decoder(repository), runner, clock=clock)
        listed = await reads.list_relationships(limit=100)
        assert len(listed["items"]) == len(ids)
        await reads.list_relationships(at_risk=True)
        await reads.phase_stats()
    for relationship_id in ids:
        for redact in (True, False):
            page = await reads.timeline(relationship_id, redact=redact, limit=100)
            assert page is not None and page["items"]


async def test_the_first_and_last_instants_accepted_are_projected_and_read(
    store: Any, dsn: str, repository: RelationshipRepository
) -> None:
    """The very first and last instants Python holds are refused by the
    validator (asyncpg stores them as -infinity and infinity and reads them
    back naive, which stopped the summaries and the statistics); the ones
    next to them are accepted, and the at-risk rules must not add a cadence
    past the year 9999."""
    first, last = (
        datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999998, tzinfo=UTC),
    )
    still = timedelta(0)
    relationships = [
        long_history(30, clock=Clock(start=last, step=still)),
        walk_to("concluded", clock=Clock(start=first, step=still)),
        walk_to(
            "cultivation", clock=Clock(start=last - timedelta(days=3), step=timedelta(hours=1))
        ),
    ]
    await _projected_rebuilt_and_read(store, dsn, repository, relationships, (first, last))


async def test_the_first_and_last_instants_stored_by_an_earlier_release_are_projected_and_read(
    store: Any, dsn: str, repository: RelationshipRepository
) -> None:
    """An earlier release accepted the very first and last instants Python
    holds as `occurred_at`; asyncpg stores them as -infinity and infinity and
    reads them back naive: the summaries compared them with aware times and
    the statistics subtracted them. Stores holding such events must still
    project (the envelopes here are built directly, as that release stored them)."""
    first, last = (
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    )
    still = timedelta(0)
    relationships = [
        walk_to("refinement", clock=Clock(start=last, step=still)),
        walk_to("concluded", clock=Clock(start=first, step=still)),
        walk_to(
            "cultivation", clock=Clock(start=last - timedelta(days=3), step=timedelta(hours=1))
        ),
    ]
    await _projected_rebuilt_and_read(store, dsn, repository, relationships, (first, last))


async def _projected_rebuilt_and_read(
    store: Any,
    dsn: str,
    repository: RelationshipRepository,
    relationships: list[Any],
    instants: tuple[datetime, datetime],
) -> None:
    """Every projection takes the relationships, a rebuild gives the same
    tables, every read query answers, and the list shows both instants."""
    head = await save_all(repository, relationships)
    runner = runner_for(store, dsn, repository, batch_size=1)
    await runner.start()
    try:
        assert await runner.wait_until_projected(None, head, timeout=60), await runner.failures()
    finally:
        await runner.stop()
    incremental = await dump(store)
    for name in runner.names:
        await runner.rebuild(name, timeout=60)
    assert await dump(store) == incremental
    await read_everything(repository, runner, [r.id for r in relationships])
    reads = ReadModels(store, decoder(repository), runner)
    listed = await reads.list_relationships()
    assert {item["opened_at"] for item in listed["items"]} >= {i.isoformat() for i in instants}

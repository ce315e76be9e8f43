"""The audit trail and its verification: an event altered, removed or moved
directly in the database is found and named, by the store, by the read models
(the HTTP layer's view) and by ``mentorflow verify``."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

import pytest

from domain import REDACTED
from domain.samples import walk_to
from service import auditor
from service.platform.settings import Settings
from service.projection_runner import ProjectionRunner
from service.relationships.read_models import ReadModels
from service.relationships.repository import RelationshipRepository
from service.store.eventstore import EventStore
from tests.projections.support import decoder

pytestmark = pytest.mark.db

Tamper = Callable[[EventStore, UUID], Awaitable[None]]


async def _sql(store: EventStore, sql: str, *args: object) -> None:
    await store.with_connection(lambda conn: conn.execute(sql, *args))


async def change_a_byte(store: EventStore, stream: UUID) -> None:
    await _sql(
        store,
        "UPDATE events SET payload = set_byte(payload, 20, get_byte(payload, 20) # 1)"
        " WHERE stream_id = $1 AND version = 5",
        stream,
    )


async def forge_the_actor(store: EventStore, stream: UUID) -> None:
    await _sql(
        store,
        "UPDATE events SET metadata = jsonb_set(metadata, '{actor,id}', '\"someone-else\"')"
        " WHERE stream_id = $1 AND version = 7",
        stream,
    )


async def delete_one(store: EventStore, stream: UUID) -> None:
    await _sql(store, "DELETE FROM events WHERE stream_id = $1 AND version = 4", stream)


async def delete_the_first(store: EventStore, stream: UUID) -> None:
    await _sql(store, "DELETE FROM events WHERE stream_id = $1 AND version = 1", stream)


async def delete_the_last(store: EventStore, stream: UUID) -> None:
    await _sql(store, "DELETE FROM events WHERE stream_id = $1 AND version = 14", stream)


async def swap_two(store: EventStore, stream: UUID) -> None:
    """Events 3 and 4 trade places (their versions are exchanged)."""
    for old, new in ((3, -3), (4, 3), (-3, 4)):
        await _sql(
            store,
            "UPDATE events SET version = $3 WHERE stream_id = $1 AND version = $2",
            stream,
            old,
            new,
        )


@dataclass(frozen=True)
class Case:
    tamper: Tamper
    first_bad: int
    store_sees_it: bool
    """False when only the projection's record reveals it (the tail was cut)."""
    event_gone: bool


CASES = {
    "a changed byte": Case(change_a_byte, 5, True, False),
    "a forged envelope": Case(forge_the_actor, 7, True, False),
    "a deleted event": Case(delete_one, 4, True, True),
    "the first event deleted": Case(delete_the_first, 1, True, True),
    "the last event deleted": Case(delete_the_last, 14, False, True),
    "a swapped order": Case(swap_two, 3, True, False),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_tampering_is_named_at_every_level(
    case: Case,
    store: EventStore,
    dsn: str,
    schema: str,
    repository: RelationshipRepository,
    runner: ProjectionRunner,
) -> None:
    victim, bystander = walk_to("concluded"), walk_to("cultivation", mentee_id="mentee-2")
    victim_events = (await repository.save(victim)).events
    await repository.save(bystander)
    assert await runner.wait_until_projected(None, await store.max_position(), 10)
    bad_event = victim_events[case.first_bad - 1]
    bad_id = bad_event.event_id if not case.event_gone else None
    if case.tamper is swap_two:
        bad_id = victim_events[3].event_id  # version 3 now holds what was event 4
    await case.tamper(store, victim.id)

    result = await store.verify_stream(victim.id)
    assert result.valid is not case.store_sees_it
    if case.store_sees_it:
        assert result.first_invalid_version == case.first_bad

    models = ReadModels(store, decoder(repository), runner)
    check = await models.verify(victim.id)
    assert check is not None and not check.valid
    assert (check.first_invalid_version, check.first_invalid_event_id) == (case.first_bad, bad_id)
    bystander_check = await models.verify(bystander.id)
    assert bystander_check is not None and bystander_check.valid

    settings = Settings(database_url=dsn, db_schema=schema)
    out, err = io.StringIO(), io.StringIO()
    assert await auditor.verify(settings, str(victim.id), out=out, err=err) == 1
    assert f"BROKEN at version {case.first_bad}" in out.getvalue()
    if bad_id is not None:
        assert str(bad_id) in out.getvalue()
    assert await auditor.verify(settings, str(bystander.id), out=io.StringIO()) == 0

    out = io.StringIO()
    assert await auditor.verify(settings, all=True, out=out) == 1
    report = await models.verify_all()
    assert [b.relationship_id for b in report.broken] == [victim.id] and not report.valid
    assert report.streams_checked == 2
    missing = [bad_event.position] if case.event_gone else []
    assert report.missing_positions == missing
    assert report.to_dict()["broken"][0]["first_invalid_version"] == case.first_bad
    assert report.broken == [check]  # the batched check says what verify says
    assert str(victim.id) in out.getvalue() and str(bystander.id) not in out.getvalue()
    if missing:
        assert f"positions missing (events deleted): {missing[0]}" in out.getvalue()


async def test_an_untouched_store_verifies(
    store: EventStore, dsn: str, schema: str, repository: RelationshipRepository
) -> None:
    relationship = walk_to("concluded")
    await repository.save(relationship)
    settings = Settings(database_url=dsn, db_schema=schema)
    out = io.StringIO()
    assert await auditor.verify(settings, relationship.id, out=out) == 0
    assert "valid (14 events checked)" in out.getvalue()
    out = io.StringIO()
    assert await auditor.verify(settings, all=True, fmt="json", out=out) == 0
    assert '"valid": true' in out.getvalue()
    unknown = "00000000-0000-0000-0000-000000000000"
    assert await auditor.verify(settings, unknown, err=io.StringIO()) == 1
    assert await auditor.verify(settings, "not-a-uuid", err=io.StringIO()) == 2
    assert await auditor.verify(settings, err=io.StringIO()) == 2
    assert await auditor.verify(settings, unknown, all=True, err=io.StringIO()) == 2


async def test_the_audit_trail_lists_every_event_with_envelope_and_chain_hash(
    store: EventStore, repository: RelationshipRepository
) -> None:
    relationship = walk_to("concluded")
    await repository.save(relationship)
    models = ReadModels(store, decoder(repository))
    records = await store.read_stream(relationship.id)
    first = await models.audit(relationship.id, redact=True, limit=10)
    assert first is not None and first["next_cursor"] is not None
    rest = await models.audit(relationship.id, redact=True, limit=10, cursor=first["next_cursor"])
    assert rest is not None and rest["next_cursor"] is None
    items = first["items"] + rest["items"]
    assert [i["chain_hash"] for i in items] == [r.chain_hash.hex() for r in records]
    assert [i["position"] for i in items] == [r.position for r in records]
    assert items[1]["data"]["values"] == REDACTED
    assert items[1]["actor"] == {"id": "mentee-1", "role": "mentee"}
    assert items[1]["source"] == "samples" and items[1]["occurred_at"].startswith("2025-01-06")
    assert items[5]["from_phase"] == "identification" and items[5]["to_phase"] == "establishment"
    full = await models.audit(relationship.id, redact=False, limit=2)
    assert full is not None and full["items"][1]["data"]["values"] == "autonomy, candour"
    assert await models.audit(walk_to("reflection").id, redact=True) is None


@pytest.mark.parametrize("page", [1, 2, 1000])
async def test_verify_all_pages_through_every_stream(
    page: int,
    store: EventStore,
    repository: RelationshipRepository,
    runner: ProjectionRunner,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from service.relationships import read_models

    monkeypatch.setattr(read_models, "VERIFY_PAGE", page)
    saved = [walk_to("concluded", mentee_id=f"mentee-{i}") for i in range(5)]
    for relationship in saved:
        await repository.save(relationship)
    assert await runner.wait_until_projected(None, await store.max_position(), 10)
    victims = sorted(r.id for r in saved)[1::2]
    await delete_the_first(store, victims[0])
    await delete_the_last(store, victims[1])
    models = ReadModels(store, decoder(repository), runner)
    report = await models.verify_all()
    assert report.streams_checked == 5 and report.events_checked == 5 * 14 - 2
    assert report.broken == [await models.verify(v) for v in victims]
    assert [b.first_invalid_version for b in report.broken] == [1, 14]

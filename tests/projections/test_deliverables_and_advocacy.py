"""An agreement's deliverables and time commitment, and the mentor's advocacy,
through the store and the read models; and events stored before these fields
existed: they keep loading, projecting and showing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain import Actor, Envelope, Relationship, relationship_view
from domain.samples import Clock, agreement_data, walk_to
from service.projection_runner import ProjectionRunner
from service.relationships.read_models import ReadModels
from service.relationships.repository import RelationshipRepository
from service.store.eventstore import EventStore
from tests.projections.support import decoder, save_all

pytestmark = pytest.mark.db

START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
MENTOR = Envelope(occurred_at=START + timedelta(days=60), actor=Actor("mentor-1", "mentor"))
DELIVERABLES = [
    {
        "id": "d1",
        "description": "the pilot paper",
        "kind": "manuscript",
        "authorship": "mentee first, mentor senior",
        "due_date": "2025-03-31",
    },
    {"id": "d2", "description": "a talk at the society meeting", "kind": "presentation"},
]


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def with_deliverables() -> Relationship:
    """In cultivation with an agreement that has a time commitment and two
    deliverables, one due on 2025-03-31."""
    clock = Clock(START)
    relationship = walk_to("identification", clock=clock)
    relationship.record(
        "mentor.selected", {"mentor_id": "mentor-1", "mentor_consent": True}, clock.envelope()
    )
    data = {
        **agreement_data(),
        "time_commitment": {"mentor_hours_per_month": 2, "mentee_hours_per_month": 6.5},
        "deliverables": DELIVERABLES,
    }
    relationship.record("agreement.proposed", data, clock.envelope())
    for by in ("mentee", "mentor"):
        relationship.record(
            "agreement.signed", {"by": by, "agreement_version": 1}, clock.envelope()
        )
    relationship.record("relationship.established", None, clock.envelope())
    return relationship


async def test_an_overdue_deliverable_in_cultivation_is_a_risk_reason(
    store: EventStore, repository: RelationshipRepository, runner: ProjectionRunner
) -> None:
    relationship = with_deliverables()
    last = await save_all(repository, [relationship])
    clock = FakeClock(datetime(2025, 3, 31, 23, 0, tzinfo=UTC))
    models = ReadModels(store, decoder(repository), runner, clock=clock)
    page = await models.list_relationships(min_position=last)
    assert page["items"][0]["risk_flags"]["overdue_deliverable"] is False

    clock.now = datetime(2025, 4, 1, 0, 1, tzinfo=UTC)  # the day after d1 was due
    reasons = {r["code"]: r for r in await models.risk_reasons(relationship.id)}
    reason = reasons["overdue_deliverable"]
    assert reason["since"] == "2025-04-01T00:00:00+00:00"
    assert reason["detail"] == "1 deliverable past due (d1; earliest due 2025-03-31)"
    proposed = await store.with_connection(
        lambda c: c.fetchval(
            "SELECT position FROM events WHERE stream_id = $1 AND topic LIKE '%AgreementProposed'",
            relationship.id,
        )
    )
    assert reason["evidence"] == [proposed]
    at_risk = await models.list_relationships(at_risk=True, min_position=last)
    assert [item["id"] for item in at_risk["items"]] == [str(relationship.id)]

    # the rule's query (one indexed query per rule) finds it too
    from projections.risk_queries import candidates

    found = await store.with_connection(lambda c: candidates(c, clock.now, models.policy))
    assert found["overdue_deliverable"] == {relationship.id}

    # a review ends cultivation: the deliverable no longer puts it at risk
    relationship.record("review.started", {"trigger": "term_ended"}, MENTOR)
    last = await save_all(repository, [relationship])
    page = await models.list_relationships(min_position=last)
    assert page["items"][0]["risk_flags"]["overdue_deliverable"] is False


async def test_advocacy_is_counted_per_relationship_and_in_the_statistics(
    store: EventStore, repository: RelationshipRepository, runner: ProjectionRunner
) -> None:
    a = walk_to("cultivation", program_id="p1")
    b = walk_to("establishment", program_id="p2")
    c = walk_to("identification")
    for relationship, kinds in ((a, ["introduction", "nomination", "introduction"]),
                                (b, ["protection"]), (c, ["opportunity"])):  # fmt: skip
        for kind in kinds:
            relationship.record("advocacy.recorded", {"kind": kind, "description": "x"}, MENTOR)
    assert relationship_view(a)["advocacy"] == {
        "count": 3,
        "by_kind": {"introduction": 2, "nomination": 1},
    }
    last = await save_all(repository, [a, b, c])
    loaded = await repository.load(a.id)
    assert loaded is not None and relationship_view(loaded)["advocacy"]["count"] == 3

    models = ReadModels(store, decoder(repository), runner)
    stats = await models.phase_stats(min_position=last)
    assert stats["advocacy"] == {
        "count": 5,
        "by_kind": {"introduction": 2, "nomination": 1, "opportunity": 1, "protection": 1},
        "by_program": {
            "p1": {"count": 3, "by_kind": {"introduction": 2, "nomination": 1}},
            "p2": {"count": 1, "by_kind": {"protection": 1}},
        },
    }
    scoped = await models.phase_stats(min_position=last, program_ids=["p2"])
    assert scoped["advocacy"] == {
        "count": 1,
        "by_kind": {"protection": 1},
        "by_program": {"p2": {"count": 1, "by_kind": {"protection": 1}}},
    }
    timeline = await models.timeline(a.id, redact=False, min_position=last)
    assert timeline is not None
    sentences = [
        item["summary"] for item in timeline["items"] if item["type"] == "advocacy.recorded"
    ]
    assert sentences[0] == "The mentor recorded an introduction"
    assert all("x" not in s.split() for s in sentences)  # the description is never quoted


# --- events stored by the release before deliverables existed -------------------------------


def _as_the_earlier_release_stored(repository: RelationshipRepository, event: Any) -> Any:
    """The event's new record, with the payload the earlier release wrote:
    an agreement.proposed without ``time_commitment`` and ``deliverables``."""
    new = repository.to_new_event(event)
    if event.api_type != "agreement.proposed":
        return new
    state = json.loads(new.payload)
    # (the codec leaves absent optional fields out, so this is what it writes today too)
    assert state.pop("time_commitment", None) is None
    assert state.pop("deliverables", None) is None
    payload = json.dumps(state, separators=(",", ":")).encode()
    return type(new)(new.stream_id, new.version, new.topic, payload, new.metadata, new.event_id)


async def test_an_agreement_stored_before_deliverables_loads_projects_and_shows(
    store: EventStore, repository: RelationshipRepository, runner: ProjectionRunner
) -> None:
    relationship = walk_to("cultivation")
    pending = relationship.collect_events()
    result = await store.append([_as_the_earlier_release_stored(repository, e) for e in pending])
    stored = await store.with_connection(
        lambda c: c.fetchval(
            "SELECT convert_from(payload, 'UTF8') FROM events WHERE stream_id = $1"
            " AND topic LIKE '%AgreementProposed'",
            relationship.id,
        )
    )
    assert "deliverables" not in stored and "time_commitment" not in stored

    loaded = await repository.load(relationship.id)
    assert loaded is not None and loaded.phase == "cultivation"
    agreement = relationship_view(loaded)["agreement"]
    assert agreement["time_commitment"] is None and agreement["deliverables"] == []
    assert agreement["goals"] and agreement["cadence"]["frequency"] == "monthly"

    models = ReadModels(
        store, decoder(repository), runner, clock=FakeClock(datetime(2030, 1, 1, tzinfo=UTC))
    )
    last = result.positions[-1]
    page = await models.list_relationships(min_position=last)
    item = page["items"][0]
    assert item["phase"] == "cultivation" and item["risk_flags"]["overdue_deliverable"] is False
    timeline = await models.timeline(relationship.id, redact=False, min_position=last)
    assert timeline is not None
    proposed = next(i for i in timeline["items"] if i["type"] == "agreement.proposed")
    assert proposed["summary"] == (
        "Agreement version 1 proposed: 2 goals, monthly meetings, 2025-02-01 to 2026-01-31"
    )
    assert "deliverables" not in proposed["data"]

    # and the relationship goes on: a new version with deliverables after a refinement
    clock = Clock(datetime(2025, 6, 1, tzinfo=UTC))
    loaded.record("review.started", {"trigger": "scheduled_review"}, clock.envelope())
    loaded.record(
        "reflection.recorded", {"author_role": "mentee", "kind": "interim"}, clock.envelope()
    )
    loaded.record("relationship.refined", None, clock.envelope())
    loaded.record(
        "agreement.proposed",
        {**agreement_data(), "deliverables": DELIVERABLES[1:]},
        clock.envelope(),
    )
    assert loaded.agreement is not None
    assert [d.id for d in loaded.agreement.deliverables] == ["d2"]
    await repository.save(loaded)


# --- a mentee's mentoring network --------------------------------------------------------


async def test_a_mentees_network_lists_relationships_mentors_and_cycles(
    store: EventStore, repository: RelationshipRepository, runner: ProjectionRunner
) -> None:
    first = walk_to("concluded", mentee_id="ada", mentor_id="m-1", program_id="p1")
    second_clock = Clock(START + timedelta(days=400))
    second = Relationship.open(
        {"mentee_id": "ada", "program_id": "p1", "predecessor_id": str(first.id)},
        second_clock.envelope("ada"),
    )
    other = walk_to("cultivation", mentee_id="ada", mentor_id="m-2", program_id="p2")
    stranger = walk_to("reflection", mentee_id="bob")
    last = await save_all(repository, [first, second, other, stranger])
    models = ReadModels(store, decoder(repository), runner)

    body = await models.mentee_network("ada", min_position=last)
    assert body is not None
    ids = [str(r.id) for r in (first, second, other)]
    assert [r["id"] for r in body["relationships"]] == ids
    assert body["relationships"][0]["successors"] == [ids[1]]
    assert body["relationships"][1]["predecessor_id"] == ids[0]
    assert body["relationships"][0]["outcome"] == "goals_achieved"
    assert body["mentors"] == ["m-1", "m-2"]
    assert body["current"] == 2
    assert body["cycles"] == [[ids[0], ids[1]], [ids[2]]]

    scoped = await models.mentee_network("ada", program_ids=["p2"], min_position=last)
    assert scoped is not None and [r["id"] for r in scoped["relationships"]] == [ids[2]]
    assert scoped["cycles"] == [[ids[2]]]
    assert await models.mentee_network("ada", program_ids=["p9"]) is None
    assert await models.mentee_network("nobody") is None

"""Relationship summaries: at-risk rules under a controllable clock, filters, paging."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain import Actor, Envelope, Relationship
from domain.samples import Clock, walk_to
from projections import InvalidQuery
from service.projection_runner import ProjectionRunner
from service.relationships.read_models import ReadModels
from service.relationships.repository import RelationshipRepository
from service.store.eventstore import EventStore
from tests.projections.support import decoder

pytestmark = pytest.mark.db

START = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


class FakeClock:
    """The read models' "now", moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def models(
    store: EventStore,
    repository: RelationshipRepository,
    runner: ProjectionRunner,
    clock: FakeClock,
) -> AsyncIterator[ReadModels]:
    yield ReadModels(store, decoder(repository), runner, clock=clock)


def envelope(at: datetime, who: str = "mentee-1", role: Any = "mentee") -> Envelope:
    return Envelope(occurred_at=at, actor=Actor(who, role), source="tests")


def cultivating(mentee_id: str = "mentee-1") -> Relationship:
    """Just established, no meeting yet, with a monthly cadence (38 days
    allowed between meetings)."""
    clock = Clock(START, timedelta(hours=1))
    relationship = walk_to("establishment", mentee_id=mentee_id, clock=clock)
    relationship.record("relationship.established", None, clock.envelope(mentee_id))
    return relationship


def established(relationship: Relationship) -> datetime:
    return relationship.phase_entered_at["cultivation"]


async def save(models: ReadModels, repository: RelationshipRepository, r: Relationship) -> int:
    saved = await repository.save(r)
    return saved.events[-1].position


async def risk(models: ReadModels, position: int, relationship: Relationship) -> list[str]:
    """The codes of the reasons the relationship is at risk now."""
    page = await models.list_relationships(min_position=position, limit=500)
    (item,) = [i for i in page["items"] if i["id"] == str(relationship.id)]
    codes = [reason["code"] for reason in item["risk_reasons"]]
    assert item["at_risk"] == bool(codes)
    assert [code for code, on in item["risk_flags"].items() if on] == codes
    return codes


async def test_no_meeting_within_the_agreed_cadence(
    models: ReadModels, repository: RelationshipRepository, clock: FakeClock
) -> None:
    r = cultivating()
    met = established(r) + 2 * DAY
    r.record("meeting.held", {"held_at": met.isoformat()}, envelope(met))
    position = await save(models, repository, r)

    clock.now = met + 37 * DAY  # monthly: 31 days + 7 days of grace
    assert await risk(models, position, r) == []
    clock.now = met + 39 * DAY
    assert await risk(models, position, r) == ["no_recent_meeting"]
    page = await models.list_relationships(at_risk=True)
    (reason,) = page["items"][0]["risk_reasons"]
    assert reason["since"] == (met + 38 * DAY).isoformat()
    assert "monthly" in reason["detail"] and met.date().isoformat() in reason["detail"]
    assert reason["evidence"] == [position]  # the meeting

    again = met + 39 * DAY
    r.record("meeting.held", {"held_at": again.isoformat()}, envelope(again))
    assert await risk(models, await save(models, repository, r), r) == []


async def test_no_first_meeting_thirty_days_after_establishment(
    models: ReadModels, repository: RelationshipRepository, clock: FakeClock
) -> None:
    r = cultivating()
    position = await save(models, repository, r)
    clock.now = established(r) + 29 * DAY
    assert await risk(models, position, r) == []
    clock.now = established(r) + 31 * DAY
    assert await risk(models, position, r) == ["no_first_meeting"]
    clock.now = established(r) + 39 * DAY  # the monthly cadence is broken too by now
    assert await risk(models, position, r) == ["no_recent_meeting", "no_first_meeting"]


async def test_overdue_action_items(
    models: ReadModels, repository: RelationshipRepository, clock: FakeClock
) -> None:
    r = cultivating()
    met = established(r) + DAY
    due = (met + 10 * DAY).date()
    items = [
        {"id": "a1", "description": "draft aims", "owner": "mentee", "due_date": due.isoformat()},
        {"id": "a2", "description": "read paper", "owner": "mentee"},
    ]
    r.record("meeting.held", {"held_at": met.isoformat(), "action_items": items}, envelope(met))
    position = await save(models, repository, r)
    clock.now = datetime.combine(due, datetime.min.time(), UTC) + timedelta(hours=23)
    assert await risk(models, position, r) == []  # due today is not overdue yet
    clock.now += 2 * timedelta(hours=1)
    assert await risk(models, position, r) == ["overdue_action_items"]
    page = await models.list_relationships(at_risk=True)
    (reason,) = page["items"][0]["risk_reasons"]
    assert "a1" in reason["detail"] and "a2" not in reason["detail"]
    assert reason["since"] == datetime.combine(due + DAY, datetime.min.time(), UTC).isoformat()
    assert reason["evidence"] == [position]  # the meeting that assigned it

    r.record("action_item.completed", {"action_item_id": "a1"}, envelope(met + 2 * DAY))
    assert await risk(models, await save(models, repository, r), r) == []


async def test_an_open_high_severity_concern(
    models: ReadModels, repository: RelationshipRepository, clock: FakeClock
) -> None:
    r = cultivating()
    at = established(r) + DAY
    r.record("meeting.held", {"held_at": at.isoformat()}, envelope(at))
    r.record("concern.raised", {"category": "other", "severity": "low"}, envelope(at))
    clock.now = at + DAY
    assert await risk(models, await save(models, repository, r), r) == []
    r.record(
        "concern.raised",
        {"category": "boundary", "severity": "high", "detail": "secret"},
        envelope(at + DAY, "mentor-1", "mentor"),
    )
    raised = await save(models, repository, r)
    assert await risk(models, raised, r) == ["open_high_concern"]
    page = await models.list_relationships(at_risk=True)
    (reason,) = page["items"][0]["risk_reasons"]
    assert reason["evidence"] == [raised] and reason["since"] == (at + DAY).isoformat()
    # a concern stays open across phases, until resolved
    r.record("review.started", {"trigger": "mismatch"}, envelope(at + 2 * DAY))
    assert await risk(models, await save(models, repository, r), r) == ["open_high_concern"]
    r.record(
        "concern.resolved",
        {"concern_id": "concern-2", "resolution": "addressed"},
        envelope(at + 3 * DAY),
    )
    assert await risk(models, await save(models, repository, r), r) == []


async def test_paused_longer_than_thirty_days(
    models: ReadModels, repository: RelationshipRepository, clock: FakeClock
) -> None:
    r = cultivating()
    met = established(r) + DAY
    paused = met + DAY
    r.record("meeting.held", {"held_at": met.isoformat()}, envelope(met))
    r.record("relationship.paused", {"reason": "leave"}, envelope(paused))
    position = await save(models, repository, r)
    clock.now = paused + 29 * DAY
    assert await risk(models, position, r) == []
    clock.now = paused + 31 * DAY  # the meeting rules wait while paused
    assert await risk(models, position, r) == ["paused_too_long"]

    resumed = paused + 40 * DAY
    r.record("relationship.resumed", None, envelope(resumed))
    position = await save(models, repository, r)
    clock.now = resumed + DAY  # the cadence counts from the resumption
    assert await risk(models, position, r) == []
    clock.now = resumed + 39 * DAY
    assert await risk(models, position, r) == ["no_recent_meeting"]


async def test_concluded_and_early_relationships_are_never_at_risk(
    models: ReadModels, repository: RelationshipRepository, clock: FakeClock
) -> None:
    done, early = walk_to("concluded"), walk_to("identification", mentee_id="mentee-2")
    await save(models, repository, done)
    position = await save(models, repository, early)
    clock.now = START + 3650 * DAY
    assert await risk(models, position, done) == []
    assert await risk(models, position, early) == ["phase_stalled"]  # identification, too long
    clock.now = early.phase_entered_at["identification"] + 59 * DAY
    assert await risk(models, position, early) == []


def opened(mentee: str, program: str) -> Relationship:
    data = (
        {"mentee_id": mentee} if program is None else {"mentee_id": mentee, "program_id": program}
    )
    return Relationship.open(data, envelope(START, mentee))


async def _all_pages(models: ReadModels, **query: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await models.list_relationships(cursor=cursor, **query)
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def test_filters_and_cursor_paging(
    models: ReadModels, repository: RelationshipRepository, clock: FakeClock
) -> None:
    made = [opened(f"mentee-{i}", f"program-{i % 2}") for i in range(7)]
    made += [
        walk_to("establishment", mentee_id="mentee-x", mentor_id="mentor-7"),
        walk_to("cultivation", mentee_id="mentee-y", mentor_id="mentor-7"),
    ]
    position = 0
    for r in made:
        position = await save(models, repository, r)
    await models.list_relationships(min_position=position)
    clock.now = START + 400 * DAY

    everything = await _all_pages(models, limit=2)
    assert [i["id"] for i in everything] == [str(r.id) for r in made]
    assert len(await _all_pages(models, limit=500)) == 9
    full_page = await models.list_relationships(limit=9)
    assert len(full_page["items"]) == 9 and full_page["next_cursor"] is None

    def ids(items: list[dict[str, Any]]) -> set[str]:
        return {i["id"] for i in items}

    program_0 = await _all_pages(models, program_id="program-0", limit=2)
    assert ids(program_0) == {str(r.id) for r in made[:7:2]}
    assert ids(await _all_pages(models, mentor_id="mentor-7")) == {str(made[7].id), str(made[8].id)}
    assert ids(await _all_pages(models, mentee_id="mentee-3")) == {str(made[3].id)}
    assert ids(await _all_pages(models, phase="cultivation")) == {str(made[8].id)}
    at_risk = await _all_pages(models, at_risk=True, limit=1)
    # cultivation without a meeting; establishment for 400 days (phase_stalled)
    assert ids(at_risk) == {str(made[7].id), str(made[8].id)}
    assert len(await _all_pages(models, at_risk=False, limit=3)) == 7
    assert await _all_pages(models, phase="refinement") == []


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "eyJrIjoidGltZWxpbmUiLCJhIjoxfQ"}, "cursor"),  # another list's cursor
        ({"phase": "dormant"}, "phase"),
    ],
)
async def test_bad_queries_name_their_parameter(
    models: ReadModels, query: dict[str, Any], path: str
) -> None:
    with pytest.raises(InvalidQuery) as raised:
        await models.list_relationships(**query)
    assert raised.value.path == path

"""The risk worker on a controllable clock: it records risk.flagged / risk.cleared
when a relationship's set of reasons changes, once, through the application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from domain import Actor, Envelope, Relationship
from domain.risk import RiskPolicy
from projections.risk_queries import evaluation_pass
from projections.summaries import NAME as SUMMARIES
from service.projection_runner import ProjectionRunner
from service.relationships.application import Application, ServiceOnly
from service.relationships.repository import RelationshipRepository
from service.risk import RiskWorker
from service.risk.worker import PassReport
from service.store.eventstore import EventStore

pytestmark = pytest.mark.db

START = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
MENTEE = Actor("mentee-1", "mentee")
MENTOR = Actor("mentor-1", "mentor")


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def application(repository: RelationshipRepository) -> Application:
    return Application(repository)


def worker_for(
    application: Application, runner: ProjectionRunner, dsn: str, clock: FakeClock
) -> RiskWorker:
    return RiskWorker(application, runner, dsn, clock=clock, interval_s=0.2, takeover_interval=0.05)


@pytest.fixture
def worker(
    application: Application, runner: ProjectionRunner, dsn: str, clock: FakeClock
) -> RiskWorker:
    return worker_for(application, runner, dsn, clock)


class Pair:
    """One relationship, driven through the application with backdated events."""

    def __init__(self, application: Application, store: EventStore, runner: ProjectionRunner):
        self.application, self.store, self.runner = application, store, runner
        self.id: UUID | None = None
        self.at = START

    async def post(
        self, event_type: str, data: dict[str, Any] | None = None, actor: Actor = MENTEE
    ) -> int:
        assert self.id is not None
        self.at += timedelta(minutes=1)
        saved = await self.application.post_event(
            self.id, event_type, data, Envelope(occurred_at=self.at, actor=actor, source="tests")
        )
        return saved.events[-1].position

    async def to_cultivation(
        self, frequency: str = "monthly", deliverables: list[dict[str, Any]] | None = None
    ) -> int:
        """Open and establish it (monthly cadence, no meeting); the position of
        ``relationship.established``."""
        opened = await self.application.open_relationship(
            {"mentee_id": "mentee-1", "program_id": "program-1"},
            Envelope(occurred_at=self.at, actor=MENTEE, source="tests"),
        )
        self.id = opened.relationship.id
        await self.post(
            "reflection.recorded",
            {"author_role": "mentee", "kind": "initial", "development_areas": ["grants"]},
        )
        await self.post("identification.started")
        await self.post("candidate.proposed", {"mentor_id": "mentor-1"})
        await self.post("candidate.met", {"mentor_id": "mentor-1", "met_at": self.at.isoformat()})
        await self.post("mentor.selected", {"mentor_id": "mentor-1", "mentor_consent": True})
        agreement = {
            "objectives": ["publish"],
            "goals": [
                {
                    "id": "g1",
                    "statement": "paper",
                    "measure": "submitted",
                    "target_date": "2025-12-01",
                }
            ],
            "cadence": {"frequency": frequency},
            "start_date": "2025-03-01",
            "end_date": "2026-03-01",
        }
        if deliverables is not None:
            agreement["deliverables"] = deliverables
        await self.post("agreement.proposed", agreement)
        await self.post("agreement.signed", {"by": "mentee", "agreement_version": 1})
        await self.post("agreement.signed", {"by": "mentor", "agreement_version": 1}, MENTOR)
        return await self.post("relationship.established")

    async def settle(self) -> None:
        """Until the summaries have projected everything recorded."""
        last = await self.store.max_position()
        assert await self.runner.wait_until_projected(SUMMARIES, last, timeout=10)

    async def risk_events(self) -> list[tuple[str, list[str]]]:
        """The risk.* events of its stream: (type, codes flagged or cleared)."""
        assert self.id is not None
        relationship = await self.application.repository.load(self.id)
        assert relationship is not None
        records = await self.store.read_stream(self.id)
        out: list[tuple[str, list[str]]] = []
        for record in records:
            event = self.application.repository.decode(record).event
            if isinstance(event, Relationship.RiskFlagged):
                out.append(("risk.flagged", [r.code for r in event.reasons]))
                assert event.actor == Actor("mentorflow", "system")
                assert event.program_id == "program-1"
            elif isinstance(event, Relationship.RiskCleared):
                out.append(("risk.cleared", list(event.codes)))
        return out


@pytest.fixture
async def pair(
    application: Application, store: EventStore, runner: ProjectionRunner
) -> AsyncIterator[Pair]:
    yield Pair(application, store, runner)


async def evaluate(pair: Pair, worker: RiskWorker) -> None:
    await pair.settle()
    await worker.evaluate_once()
    await pair.settle()


async def test_monthly_cadence_without_meeting_is_flagged_then_cleared_by_a_meeting(
    pair: Pair, worker: RiskWorker, clock: FakeClock
) -> None:
    established = await pair.to_cultivation()
    since = pair.at
    clock.now = since + 29 * DAY
    await evaluate(pair, worker)
    assert await pair.risk_events() == []
    clock.now = since + 31 * DAY  # no first meeting within 30 days
    await evaluate(pair, worker)
    assert await pair.risk_events() == [("risk.flagged", ["no_first_meeting"])]
    clock.now = since + 39 * DAY  # monthly: 31 days + 7 days of grace
    await evaluate(pair, worker)
    await evaluate(pair, worker)  # nothing changed: nothing recorded
    assert await pair.risk_events() == [
        ("risk.flagged", ["no_first_meeting"]),
        ("risk.flagged", ["no_recent_meeting", "no_first_meeting"]),
    ]
    page = await _listed(worker, pair)
    reasons = {r["code"]: r for r in page["risk_reasons"]}
    assert reasons["no_recent_meeting"]["evidence"] == [established]
    assert reasons["no_recent_meeting"]["since"] == (since + 38 * DAY).isoformat()
    assert page["risk_recorded"] == ["no_recent_meeting", "no_first_meeting"]

    pair.at = clock.now
    await pair.post("meeting.held", {"held_at": clock.now.isoformat()})
    await evaluate(pair, worker)
    assert (await pair.risk_events())[-1] == (
        "risk.cleared",
        ["no_recent_meeting", "no_first_meeting"],
    )
    assert (await _listed(worker, pair))["risk_recorded"] == []


async def test_a_deliverable_past_due_is_flagged_then_cleared_by_the_review(
    pair: Pair, worker: RiskWorker, clock: FakeClock
) -> None:
    due = (START + 5 * DAY).date()
    await pair.to_cultivation(
        deliverables=[{"id": "d1", "description": "the paper", "due_date": due.isoformat()}]
    )
    clock.now = START + 5 * DAY + timedelta(hours=12)  # due today: not yet overdue
    await evaluate(pair, worker)
    assert await pair.risk_events() == []
    clock.now = START + 7 * DAY
    await evaluate(pair, worker)
    assert await pair.risk_events() == [("risk.flagged", ["overdue_deliverable"])]
    reasons = {r["code"]: r for r in (await _listed(worker, pair))["risk_reasons"]}
    assert reasons["overdue_deliverable"]["detail"] == (
        f"1 deliverable past due (d1; earliest due {due.isoformat()})"
    )
    # advocacy changes nothing of it (and is the mentor's to record)
    await pair.post("advocacy.recorded", {"kind": "introduction"}, MENTOR)
    await pair.post("review.started", {"trigger": "scheduled_review"})
    await evaluate(pair, worker)
    assert (await pair.risk_events())[-1] == ("risk.cleared", ["overdue_deliverable"])


async def _listed(worker: RiskWorker, pair: Pair) -> dict[str, Any]:
    from service.relationships.read_models import ReadModels

    models = ReadModels(
        pair.store,
        pair.application.repository.decode,  # type: ignore[arg-type]
        pair.runner,
        clock=worker.clock,
    )
    page = await models.list_relationships(limit=10)
    item: dict[str, Any]
    (item,) = [i for i in page["items"] if i["id"] == str(pair.id)]
    return item


async def test_paused_past_its_expected_return(
    pair: Pair, worker: RiskWorker, clock: FakeClock
) -> None:
    await pair.to_cultivation()
    await pair.post("meeting.held", {"held_at": pair.at.isoformat()})
    paused = await pair.post(
        "relationship.paused", {"reason": "leave", "expected_resume": "2025-04-01"}
    )
    clock.now = datetime(2025, 4, 7, 23, tzinfo=UTC)  # within 7 days of grace
    await evaluate(pair, worker)
    assert await pair.risk_events() == []
    clock.now = datetime(2025, 4, 8, 1, tzinfo=UTC)
    await evaluate(pair, worker)
    assert await pair.risk_events() == [("risk.flagged", ["paused_too_long"])]
    (reason,) = (await _listed(worker, pair))["risk_reasons"]
    assert reason["evidence"] == [paused] and reason["since"] == "2025-04-08T00:00:00+00:00"
    pair.at = clock.now
    await pair.post("relationship.resumed")
    await evaluate(pair, worker)
    assert (await pair.risk_events())[-1] == ("risk.cleared", ["paused_too_long"])


async def test_an_overdue_action_item(pair: Pair, worker: RiskWorker, clock: FakeClock) -> None:
    await pair.to_cultivation(frequency="quarterly")
    items = [{"id": "a1", "description": "draft", "owner": "mentee", "due_date": "2025-03-10"}]
    await pair.post("meeting.held", {"held_at": pair.at.isoformat(), "action_items": items})
    clock.now = datetime(2025, 3, 10, 23, tzinfo=UTC)
    await evaluate(pair, worker)
    assert await pair.risk_events() == []
    clock.now = datetime(2025, 3, 11, 0, 1, tzinfo=UTC)
    await evaluate(pair, worker)
    assert await pair.risk_events() == [("risk.flagged", ["overdue_action_items"])]
    await pair.post("action_item.completed", {"action_item_id": "a1"})
    await evaluate(pair, worker)
    assert (await pair.risk_events())[-1] == ("risk.cleared", ["overdue_action_items"])


async def test_a_high_concern_raised_then_resolved(
    pair: Pair, worker: RiskWorker, clock: FakeClock
) -> None:
    await pair.to_cultivation()
    await pair.post("meeting.held", {"held_at": pair.at.isoformat()})
    await pair.post("concern.raised", {"category": "boundary", "severity": "high"}, MENTOR)
    clock.now = pair.at + DAY
    await evaluate(pair, worker)
    assert await pair.risk_events() == [("risk.flagged", ["open_high_concern"])]
    await pair.post("review.started", {"trigger": "mismatch"})  # still open in refinement
    await evaluate(pair, worker)
    assert await pair.risk_events() == [("risk.flagged", ["open_high_concern"])]
    await pair.post("concern.resolved", {"concern_id": "concern-1", "resolution": "referred"})
    await evaluate(pair, worker)
    assert await pair.risk_events() == [
        ("risk.flagged", ["open_high_concern"]),
        ("risk.cleared", ["open_high_concern"]),
    ]


async def test_clients_cannot_post_risk_events(pair: Pair) -> None:
    await pair.to_cultivation()
    posts: list[tuple[str, dict[str, Any]]] = [
        ("risk.flagged", {"reasons": [{"code": "phase_stalled", "since": START.isoformat()}]}),
        ("risk.cleared", {"codes": ["phase_stalled"]}),
    ]
    for event_type, data in posts:
        with pytest.raises(ServiceOnly, match="recorded by the service only"):
            await pair.post(event_type, data)


async def test_two_workers_and_a_restart_record_each_change_once(
    pair: Pair,
    application: Application,
    runner: ProjectionRunner,
    dsn: str,
    clock: FakeClock,
) -> None:
    await pair.to_cultivation()
    await pair.settle()
    clock.now = pair.at + 31 * DAY
    first, second = (
        worker_for(application, runner, dsn, clock),
        worker_for(application, runner, dsn, clock),
    )
    # both evaluate the same summary version at once (as if the lease had lapsed)
    await asyncio.gather(first.evaluate_once(), second.evaluate_once())
    # a restarted worker before the summaries have caught up: same version, same decision
    await worker_for(application, runner, dsn, clock).evaluate_once()
    await pair.settle()
    await worker_for(application, runner, dsn, clock).evaluate_once()
    assert await pair.risk_events() == [("risk.flagged", ["no_first_meeting"])]

    # under the lease, only one of two running workers evaluates
    first, second = (
        worker_for(application, runner, dsn, clock),
        worker_for(application, runner, dsn, clock),
    )
    tasks = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
    try:
        for _ in range(200):
            if first.passes + second.passes >= 3:
                break
            await asyncio.sleep(0.05)
        assert (first.leading, second.leading).count(True) == 1
        assert [first.passes, second.passes].count(0) == 1
        clock.now = pair.at + 40 * DAY
        for _ in range(200):
            if len(await pair.risk_events()) == 2:
                break
            await asyncio.sleep(0.05)
        # the leader goes away: the other takes over, and records nothing twice
        leader = 0 if first.leading else 1
        tasks[leader].cancel()
        await asyncio.gather(tasks[leader], return_exceptions=True)
        standby = (first, second)[1 - leader]
        before = standby.passes
        for _ in range(200):
            if standby.passes > before + 1:
                break
            await asyncio.sleep(0.05)
        assert standby.leading
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert await pair.risk_events() == [
        ("risk.flagged", ["no_first_meeting"]),
        ("risk.flagged", ["no_recent_meeting", "no_first_meeting"]),
    ]


def test_policy_from_settings() -> None:
    from service.platform.settings import Settings

    settings = Settings.from_env(
        {
            "MENTORFLOW_RISK_INTERVAL": "5",
            "MENTORFLOW_RISK_STALL_IDENTIFICATION_DAYS": "10",
            "MENTORFLOW_RISK_PAUSE_DAYS": "14",
        }
    )
    assert settings.risk_interval_s == 5 and settings.risk_worker
    assert not Settings.from_env({"MENTORFLOW_RISK_WORKER": "0"}).risk_worker
    assert settings.risk_policy.stall_limits["identification"] == 10 * DAY
    assert (
        settings.risk_policy.stall_limits["establishment"]
        == RiskPolicy().stall_limits["establishment"]
    )
    assert settings.risk_policy.pause_limit == 14 * DAY


async def test_one_pass_records_the_changes_of_many_relationships(
    application: Application, store: EventStore, runner: ProjectionRunner, worker: RiskWorker
) -> None:
    pairs = [Pair(application, store, runner) for _ in range(40)]
    for pair in pairs:
        opened = await application.open_relationship(
            {"mentee_id": "mentee-1", "program_id": "program-1"},
            Envelope(occurred_at=START, actor=MENTEE, source="tests"),
        )
        pair.id = opened.relationship.id
        await pair.post(
            "reflection.recorded",
            {"author_role": "mentee", "kind": "initial", "development_areas": ["grants"]},
        )
        await pair.post("identification.started")
    await pairs[0].settle()
    worker.clock.now = START + 61 * DAY  # type: ignore[attr-defined]
    report = await worker.evaluate_once()
    assert len(report.recorded) == 40 and report.skipped == 0
    await pairs[0].settle()
    assert (await worker.evaluate_once()).changes == 0
    for pair in pairs:
        assert await pair.risk_events() == [("risk.flagged", ["phase_stalled"])]


async def _passes_after_news(worker: RiskWorker, pair: Pair, wait: float) -> int:
    """Run `worker`; once it has made its first pass, record an event (news
    for it) and return how many passes it made within `wait` seconds."""
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(200):
            if worker.passes >= 1:
                break
            await asyncio.sleep(0.05)
        assert worker.passes == 1
        await pair.post("meeting.held", {"held_at": pair.at.isoformat()})
        await pair.settle()
        await asyncio.sleep(wait)
        return worker.passes
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_news_starts_a_pass_at_most_every_min_interval(
    pair: Pair, application: Application, runner: ProjectionRunner, dsn: str, clock: FakeClock
) -> None:
    """Every summaries batch is news; under load the passes are paced, not one per batch."""
    await pair.to_cultivation()
    await pair.settle()

    def paced(min_interval_s: float) -> RiskWorker:
        return RiskWorker(
            application,
            runner,
            dsn,
            clock=clock,
            interval_s=60,
            takeover_interval=0.05,
            min_interval_s=min_interval_s,
        )

    assert await _passes_after_news(paced(30), pair, wait=0.5) == 1
    assert await _passes_after_news(paced(0), pair, wait=0.5) >= 2


# --- passes on news look at the flagged relationships that changed -------------------------


async def test_a_pass_on_news_rechecks_a_flagged_relationship_only_if_its_row_changed(
    pair: Pair, worker: RiskWorker, store: EventStore, clock: FakeClock
) -> None:
    """A recorded code can stop holding without an event only if the clock
    goes back (or the policy or the row's projection changes): here the pass
    is asked about a moment before the flag, where no rule holds."""
    await pair.to_cultivation()
    clock.now = pair.at + 31 * DAY
    await evaluate(pair, worker)
    assert await pair.risk_events() == [("risk.flagged", ["no_first_meeting"])]
    last = await store.max_position()  # the flag's position: the row's last event

    async def gone(changed_after: int | None) -> list[UUID]:
        changes = await store.with_connection(
            lambda conn: evaluation_pass(conn, START, worker.policy, changed_after=changed_after)
        )
        return [c.relationship_id for c in changes]

    assert await gone(None) == [pair.id]  # a complete pass
    assert await gone(last - 1) == [pair.id]  # its row changed after that position
    assert await gone(last) == []  # its row did not change since


class Recording(RiskWorker):
    """The real worker, remembering what each pass of its loop looked at."""

    looked: list[int | None]

    async def evaluate_once(self, *, changed_after: int | None = None) -> PassReport:
        self.looked.append(changed_after)
        return await super().evaluate_once(changed_after=changed_after)


async def _until(condition: Callable[[], bool], seconds: float = 10) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not within the time allowed")


async def test_the_worker_passes_completely_first_then_on_news_then_every_interval(
    pair: Pair, application: Application, runner: ProjectionRunner, dsn: str, clock: FakeClock
) -> None:
    await pair.to_cultivation()
    await pair.settle()
    worker = Recording(
        application, runner, dsn, clock=clock, interval_s=1.0, takeover_interval=0.05
    )
    worker.min_interval_s = 0
    worker.looked = []
    task = asyncio.create_task(worker.run())
    try:
        await _until(lambda: len(worker.looked) == 1)
        assert worker.looked == [None]  # the first pass is complete
        checkpoint = await runner.checkpoint(SUMMARIES)
        await pair.post("meeting.held", {"held_at": pair.at.isoformat()})
        await _until(lambda: len(worker.looked) >= 2)
        assert worker.looked[1] == checkpoint  # on news: rows changed since the first began
        await _until(lambda: None in worker.looked[2:], seconds=5)  # interval_s later
        count = len(worker.looked)
        clock.now -= DAY  # the clock set back: the next pass is complete
        await pair.post("meeting.held", {"held_at": pair.at.isoformat()})
        await _until(lambda: len(worker.looked) > count)
        assert worker.looked[count] is None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

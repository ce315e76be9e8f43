"""Every example body of docs/events.md is accepted by the running service
when posted in a phase that accepts it (a few filler events, written here,
make the guards hold)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from domain import EVENT_CLASSES, RECORDABLE_TYPES
from tests.docs.examples import event_examples
from tests.e2e.conftest import Api
from tests.support.server import ADMIN_TOKEN, ServerProcess, running_server

pytestmark = pytest.mark.db

MENTEE = {"id": "mentee-1", "role": "mentee"}
MENTOR = {"id": "mentor-7", "role": "mentor"}

Step = str | dict[str, Any]  # a documented example by type, or a filler body

TO_REFINEMENT: list[Step] = [
    "reflection.recorded",
    "concern.raised",
    "concern.resolved",
    "identification.started",
    "candidate.proposed",
    {"type": "candidate.proposed", "data": {"mentor_id": "mentor-9"}, "actor": MENTEE},
    "candidate.declined",
    "candidate.met",
    "mentor.selected",
    "agreement.proposed",
    "agreement.signed",
    {"type": "agreement.signed", "data": {"by": "mentor", "agreement_version": 1}, "actor": MENTOR},
    "relationship.paused",
    "relationship.resumed",
    "relationship.established",
    "meeting.scheduled",
    "meeting.held",
    "meeting.missed",
    "action_item.completed",
    "goal.progressed",
    "feedback.given",
    "advocacy.recorded",
    "review.started",
    {
        "type": "reflection.recorded",
        "data": {"author_role": "mentee", "kind": "closing"},
        "actor": MENTEE,
    },
]
JOURNEYS: list[list[Step]] = [
    [*TO_REFINEMENT, "relationship.refined"],
    [*TO_REFINEMENT, "relationship.concluded"],
    ["relationship.withdrawn"],
]


@pytest.fixture(scope="module")
def server(dsn: str) -> Iterator[ServerProcess]:
    with running_server(dsn) as process:
        yield process


@pytest.fixture
async def writer(server: ServerProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        admin = Api(session, server.url, ADMIN_TOKEN)
        yield admin.as_token(await admin.token_for("writer"))


async def test_every_documented_example_is_accepted_in_its_phase(writer: Api) -> None:
    examples = event_examples()
    posted: set[str] = set()
    for journey in JOURNEYS:
        status, opened, _ = await writer.post("/v1/relationships", {"mentee_id": "mentee-1"})
        assert status == 201, opened
        for step in journey:
            body = examples[step] if isinstance(step, str) else step
            status, answer, _ = await writer.post(f"/v1/relationships/{opened['id']}/events", body)
            assert status == 201, (step, answer)
            if step == "relationship.paused":  # as events.md says: refused while paused
                status, answer, _ = await writer.post(
                    f"/v1/relationships/{opened['id']}/events", examples["agreement.signed"]
                )
                assert status == 409 and answer["paused"] is True, answer
            if isinstance(step, str):
                posted.add(step)
        if journey is JOURNEYS[0]:  # advocacy from anyone but the mentor is refused
            body = {**examples["advocacy.recorded"], "actor": MENTEE}
            status, answer, _ = await writer.post(f"/v1/relationships/{opened['id']}/events", body)
            assert status == 422, answer
            assert answer["unmet_guards"] == ["recorded_by_the_mentor"], answer
    service_only = {t for t in RECORDABLE_TYPES if EVENT_CLASSES[t].recorded_by_service}
    assert service_only == {"risk.flagged", "risk.cleared"}
    assert posted == set(RECORDABLE_TYPES) - service_only
    status, opened, _ = await writer.post("/v1/relationships", {"mentee_id": "mentee-1"})
    for event_type in sorted(service_only):  # documented, but recorded by the service only
        url = f"/v1/relationships/{opened['id']}/events"
        status, answer, _ = await writer.post(url, examples[event_type])
        assert status == 403 and "recorded by the service only" in answer["detail"], answer

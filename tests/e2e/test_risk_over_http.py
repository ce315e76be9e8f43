"""At-risk, as time passes, end to end: events backdated through `occurred_at`,
the running service's risk worker (short MENTORFLOW_RISK_INTERVAL) records
risk.flagged / risk.cleared, and a real receiver on 127.0.0.1 gets the webhooks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.e2e.conftest import Api
from tests.e2e.journey import MENTEE, TO_CULTIVATION
from tests.support.receiver import serving
from tests.support.server import ADMIN_TOKEN, ServerProcess, running_server
from tests.support.waiting import wait_until

pytestmark = pytest.mark.db


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(json.loads(await request.read()))
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    receiver = Receiver()
    async with serving(receiver.handle) as url:
        yield receiver, url


async def _post(api: Api, relationship_id: str, body: dict[str, Any]) -> dict[str, Any]:
    status, answer, _ = await api.post(f"/v1/relationships/{relationship_id}/events", body)
    assert status == 201, (body["type"], answer)
    return dict(answer)


async def test_risk_is_flagged_and_cleared_with_webhooks(
    dsn: str, receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    env = {
        "MENTORFLOW_WEBHOOK_ALLOW_PRIVATE": "1",
        "MENTORFLOW_WEBHOOK_RETRY_SCHEDULE": "1,1",
        "MENTORFLOW_RISK_WORKER": "1",
        "MENTORFLOW_RISK_INTERVAL": "0.5",
    }
    with running_server(dsn, **env) as server:
        async with aiohttp.ClientSession() as session:
            admin = Api(session, server.url, ADMIN_TOKEN)
            status, _, _ = await admin.post(
                "/v1/webhooks", {"url": url, "event_types": ["relationship.risk.*"]}
            )
            assert status == 201
            api = admin.as_token(await admin.token_for("writer"))

            # established 60 days ago with a monthly cadence, no meeting since
            now = datetime.now(UTC)
            start = now - timedelta(days=70)
            status, opened, _ = await api.post(
                "/v1/relationships",
                {
                    "mentee_id": "mentee-1",
                    "program_id": "program-9",
                    "occurred_at": start.isoformat(),
                },
            )
            assert status == 201, opened
            relationship_id = opened["id"]
            recorded = []
            for index, (event_type, data, actor) in enumerate(TO_CULTIVATION):
                at = start + timedelta(days=1, hours=index)
                body = {"type": event_type, "actor": actor, "occurred_at": at.isoformat()}
                if data is not None:
                    body["data"] = data
                recorded.append(await _post(api, relationship_id, body))
            established = recorded[-1]["position"]

            await wait_until(lambda: len(hooks.bodies) >= 1)
            flagged = hooks.bodies[0]
            assert flagged["type"] == "org.mentorflow.relationship.risk.flagged"
            assert flagged["data"]["relationship_id"] == relationship_id
            assert flagged["data"]["program_id"] == "program-9"
            assert flagged["data"]["codes"] == ["no_recent_meeting", "no_first_meeting"]

            status, view, _ = await api.get(f"/v1/relationships/{relationship_id}")
            assert status == 200
            reasons = {reason["code"]: reason for reason in view["risk_reasons"]}
            assert set(reasons) == {"no_recent_meeting", "no_first_meeting"}
            assert reasons["no_first_meeting"]["evidence"] == [established]
            status, page, _ = await api.get("/v1/relationships?at_risk=true")
            assert [item["id"] for item in page["items"]] == [relationship_id]
            assert page["items"][0]["risk_reasons"] == view["risk_reasons"]

            status, events, _ = await api.get(f"/v1/relationships/{relationship_id}/events")
            (risk,) = [e for e in events["items"] if e["type"] == "risk.flagged"]
            assert risk["actor"] == {"id": "mentorflow", "role": "system"}
            assert [r["code"] for r in risk["data"]["reasons"]] == [
                "no_recent_meeting",
                "no_first_meeting",
            ]

            # clients cannot post it
            status, problem, _ = await api.post(
                f"/v1/relationships/{relationship_id}/events",
                {"type": "risk.cleared", "data": {"codes": ["no_first_meeting"]}},
            )
            assert status == 403 and "service only" in problem["detail"], problem

            # resolving an unknown concern is a guard failure
            status, problem, _ = await api.post(
                f"/v1/relationships/{relationship_id}/events",
                {
                    "type": "concern.resolved",
                    "data": {"concern_id": "c9", "resolution": "addressed"},
                },
            )
            assert status == 422 and problem["unmet_guards"] == ["concern_was_raised"], problem

            # a meeting clears both
            held = now - timedelta(hours=1)
            body = {
                "type": "meeting.held",
                "actor": MENTEE,
                "occurred_at": held.isoformat(),
                "data": {"held_at": held.isoformat()},
            }
            await _post(api, relationship_id, body)
            await wait_until(lambda: len(hooks.bodies) >= 2)
            cleared = hooks.bodies[1]
            assert cleared["type"] == "org.mentorflow.relationship.risk.cleared"
            assert cleared["data"]["codes"] == ["no_recent_meeting", "no_first_meeting"]
            assert cleared["data"]["program_id"] == "program-9"
            status, view, _ = await api.get(f"/v1/relationships/{relationship_id}")
            assert view["risk_reasons"] == []
            await asyncio.sleep(1.5)  # a few more passes: nothing new is recorded
            assert len(hooks.bodies) == 2
            status, metrics, _ = await api.get("/metrics")
            assert "mentorflow_risk_leader 1.0" in metrics
            assert 'mentorflow_events_appended_total{type="risk.flagged"} 1.0' in metrics


async def test_two_processes_record_each_change_once(dsn: str) -> None:
    """Two service processes on one database, both with the risk worker: one
    runs it (the lease), and when it is killed the other takes over without
    recording anything twice."""
    env = {"MENTORFLOW_RISK_WORKER": "1", "MENTORFLOW_RISK_INTERVAL": "0.3"}
    with running_server(dsn, **env) as first:
        second = ServerProcess(dsn, first.schema, **env)
        second.start()
        try:
            async with aiohttp.ClientSession() as session:
                admin = Api(session, first.url, ADMIN_TOKEN)
                api = admin.as_token(await admin.token_for("writer"))
                other = Api(session, second.url, api.token)
                start = datetime.now(UTC) - timedelta(days=100)
                ids = []
                for n in range(4):  # identification for 100 days: phase_stalled
                    status, opened, _ = await (api if n % 2 else other).post(
                        "/v1/relationships",
                        {"mentee_id": f"mentee-{n}", "occurred_at": start.isoformat()},
                    )
                    assert status == 201, opened
                    ids.append(opened["id"])
                    for event_type, data, actor in TO_CULTIVATION[:2]:
                        body = {
                            "type": event_type,
                            "actor": actor,
                            "occurred_at": start.isoformat(),
                        }
                        if data is not None:
                            body["data"] = data
                        await _post(api, opened["id"], body)

                async def flagged(relationship_id: str) -> list[dict[str, Any]]:
                    _, events, _ = await api.get(f"/v1/relationships/{relationship_id}/events")
                    return [e for e in events["items"] if e["type"].startswith("risk.")]

                for relationship_id in ids:
                    for _ in range(300):
                        if await flagged(relationship_id):
                            break
                        await asyncio.sleep(0.1)
                # whoever ran it, kill it: the other process takes over
                leaders = []
                for process, base in ((first, first.url), (second, second.url)):
                    status, text, _ = await Api(session, base, None).get("/metrics")
                    if "mentorflow_risk_leader 1.0" in text:
                        leaders.append(process)
                assert len(leaders) == 1
                leaders[0].kill()
                survivor = second if leaders[0] is first else first
                survivor_api = Api(session, survivor.url, api.token)
                for _ in range(100):
                    _, text, _ = await Api(session, survivor.url, None).get("/metrics")
                    if "mentorflow_risk_leader 1.0" in text:
                        break
                    await asyncio.sleep(0.1)
                assert "mentorflow_risk_leader 1.0" in text
                await asyncio.sleep(1.0)  # a few passes of the new leader
                for relationship_id in ids:
                    _, events, _ = await survivor_api.get(
                        f"/v1/relationships/{relationship_id}/events"
                    )
                    risk = [e for e in events["items"] if e["type"].startswith("risk.")]
                    assert [
                        (e["type"], [r["code"] for r in e["data"]["reasons"]]) for e in risk
                    ] == [("risk.flagged", ["phase_stalled"])]
        finally:
            second.close()

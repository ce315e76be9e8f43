"""Read models and webhook administration through the real server process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
import standardwebhooks
from aiohttp import web

from domain import create_cipher_key
from tests.e2e.conftest import Api
from tests.e2e.journey import TO_CONCLUDED, TO_CULTIVATION, open_relationship, walk
from tests.support.receiver import serving
from tests.support.server import ADMIN_TOKEN, ServerProcess, running_server
from tests.support.waiting import wait_until

pytestmark = pytest.mark.db


async def test_list_timeline_audit_verify_and_stats(api: Api) -> None:
    relationship_id = str((await open_relationship(api, program_id="prog-x"))["id"])
    recorded = await walk(api, relationship_id, TO_CULTIVATION)
    last = recorded[-1]["position"]

    status, page, _ = await api.get(f"/v1/relationships?program_id=prog-x&min_position={last}")
    assert status == 200
    assert [item["id"] for item in page["items"]] == [relationship_id]
    assert page["items"][0]["phase"] == "cultivation"

    status, timeline, _ = await api.get(
        f"/v1/relationships/{relationship_id}/timeline?min_position={last}"
    )
    assert status == 200
    assert len(timeline["items"]) == 1 + len(TO_CULTIVATION)
    assert all(item["summary"] for item in timeline["items"])

    status, trail, _ = await api.get(f"/v1/relationships/{relationship_id}/audit")
    assert status == 200 and len(trail["items"]) == 1 + len(TO_CULTIVATION)
    status, check, _ = await api.get(f"/v1/relationships/{relationship_id}/audit/verify")
    assert status == 200 and check["valid"] is True and check["first_invalid_version"] is None

    status, stats, _ = await api.get(f"/v1/stats/phases?min_position={last}")
    assert status == 200 and stats

    status, problem, _ = await api.get("/v1/relationships?min_position=999999999")
    assert status == 422 and problem["errors"][0]["path"] == "query.min_position"
    status, problem, _ = await api.get("/v1/relationships?at_risk=maybe")
    assert status == 422


async def test_auditor_timeline_is_redacted(api: Api) -> None:
    relationship_id = str((await open_relationship(api))["id"])
    recorded = await walk(api, relationship_id, TO_CULTIVATION[:1])
    auditor = api.as_token(await api.token_for("auditor"))
    position = recorded[-1]["position"]
    path = f"/v1/relationships/{relationship_id}/timeline?min_position={position}"
    _, seen_by_auditor, _ = await auditor.get(path)
    _, seen_by_writer, _ = await api.get(path)
    assert "private thoughts" not in str(seen_by_auditor)
    assert "private thoughts" in str(seen_by_writer)


class Receiver:
    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.deliveries.append((dict(request.headers), await request.read()))
        self.arrived.set()
        return web.Response(status=204)


@pytest.fixture
async def receiver_url() -> AsyncIterator[tuple[Receiver, str]]:
    receiver = Receiver()
    async with serving(receiver.handle) as url:
        yield receiver, url


async def test_webhook_admin_and_ssrf_guard_over_http(api: Api) -> None:
    admin = api.as_token(ADMIN_TOKEN)
    for url in ("http://127.0.0.1/x", "http://169.254.169.254/", "http://10.0.0.1/"):
        status, problem, _ = await admin.post("/v1/webhooks", {"url": url})
        assert status == 422 and problem["errors"][0]["path"] == "url", url
    status, problem, _ = await admin.post(
        "/v1/webhooks", {"url": "https://example.com/h", "event_types": ["nonsense.type"]}
    )
    assert status == 422 and problem["errors"][0]["path"] == "event_types[0]"
    status, _, _ = await api.post("/v1/webhooks", {"url": "https://example.com/h"})
    assert status == 403  # writers may not manage webhooks


async def test_webhooks_delivered_by_the_server(
    dsn: str, receiver_url: tuple[Receiver, str]
) -> None:
    receiver, url = receiver_url
    env = {
        "MENTORFLOW_WEBHOOK_ALLOW_PRIVATE": "1",
        "MENTORFLOW_WEBHOOK_RETRY_SCHEDULE": "1,1",
        "MENTORFLOW_CIPHER_KEY": create_cipher_key(),  # secrets sealed at rest, then opened
    }
    with running_server(dsn, **env) as server:
        async with _writer(server) as api:
            await _administer_and_receive(api, receiver, url)


async def _administer_and_receive(api: Api, receiver: Receiver, url: str) -> None:
    admin = api.as_token(ADMIN_TOKEN)
    status, created, _ = await admin.post(
        "/v1/webhooks", {"url": url, "event_types": ["relationship.phase_changed"]}
    )
    assert status == 201 and created["secret"].startswith("whsec_")
    webhook_id = created["id"]
    status, listed, _ = await admin.get("/v1/webhooks")
    assert created["secret"] not in str(listed)
    assert all("secret" not in item for item in listed["items"])

    relationship_id = str((await open_relationship(api))["id"])
    await walk(api, relationship_id, TO_CULTIVATION + TO_CONCLUDED)
    await wait_until(lambda: len(receiver.deliveries) == 5)
    for headers, body in receiver.deliveries:
        standardwebhooks.Webhook(created["secret"]).verify(body, headers)

    log = await _deliveries_once_recorded(admin, webhook_id, 5)
    assert len(log["items"]) == 5
    assert all(item["status_code"] == 204 for item in log["items"])

    delivery_id = log["items"][0]["delivery_id"]
    status, _, _ = await admin.post(f"/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry", {})
    assert status == 202
    await wait_until(lambda: len(receiver.deliveries) == 6)

    status, rotated, _ = await admin.post(f"/v1/webhooks/{webhook_id}/rotate-secret", {})
    assert status == 200 and rotated["secret"] != created["secret"]
    status, patched, _ = await admin.call("PATCH", f"/v1/webhooks/{webhook_id}", {"enabled": False})
    assert status == 200 and patched["enabled"] is False
    status, _, _ = await admin.post(
        f"/v1/webhooks/{webhook_id}/recover", {"since": "2020-01-01T00:00:00Z"}
    )
    assert status == 202
    await _check_paging(admin, f"/v1/webhooks/{webhook_id}/deliveries", page_size=4)
    for _ in range(2):
        status, body, _ = await admin.post(
            "/v1/webhooks", {"url": url, "event_types": ["relationship.relationship.withdrawn"]}
        )
        assert status == 201, body
    await _check_paging(admin, "/v1/webhooks", page_size=2)
    status, _, _ = await admin.call("DELETE", f"/v1/webhooks/{webhook_id}")
    assert status == 204
    status, _, _ = await admin.get(f"/v1/webhooks/{webhook_id}")
    assert status == 404


async def _check_paging(admin: Api, path: str, *, page_size: int) -> None:
    """Following ``next_cursor`` pages gives the whole list, each item once."""
    status, whole, _ = await admin.get(path)
    assert status == 200 and whole["next_cursor"] is None and len(whole["items"]) > page_size
    items: list[dict[str, object]] = []
    query = f"?limit={page_size}"
    while True:
        status, page, _ = await admin.get(path + query)
        assert status == 200 and len(page["items"]) <= page_size, page
        items += page["items"]
        if page["next_cursor"] is None:
            break
        query = f"?limit={page_size}&cursor={page['next_cursor']}"
    assert items == whole["items"]


async def test_a_killed_server_delivers_every_message_after_restart(
    dsn: str, receiver_url: tuple[Receiver, str]
) -> None:
    """SIGKILL while messages are being delivered; after a restart every
    message arrives (at least once), each with its one webhook-id."""
    receiver, url = receiver_url
    env = {
        "MENTORFLOW_WEBHOOK_ALLOW_PRIVATE": "1",
        "MENTORFLOW_WEBHOOK_RETRY_SCHEDULE": "1,1,1",
        "MENTORFLOW_WEBHOOK_TIMEOUT": "1",  # so a dead process's leases end in 8 s
    }
    with running_server(dsn, **env) as server:
        async with _writer(server) as api:
            await _kill_while_delivering(server, api, receiver, url)


async def _kill_while_delivering(
    server: ServerProcess, api: Api, receiver: Receiver, url: str
) -> None:
    admin = api.as_token(ADMIN_TOKEN)
    await admin.post("/v1/webhooks", {"url": url, "event_types": ["*"]})
    relationship_ids = [str((await open_relationship(api))["id"]) for _ in range(5)]
    expected = 0
    for relationship_id in relationship_ids:
        expected += 1 + len(await walk(api, relationship_id, TO_CULTIVATION)) + 3
    await asyncio.wait_for(receiver.arrived.wait(), 30)
    server.kill()
    received_before = len(receiver.deliveries)
    server.start()
    await wait_until(lambda: len({h["webhook-id"] for h, _ in receiver.deliveries}) == expected, 60)
    assert received_before < expected, "the kill came too late to test anything"


@asynccontextmanager
async def _writer(server: ServerProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        admin = Api(session, server.url, ADMIN_TOKEN)
        yield admin.as_token(await admin.token_for("writer"))


async def _deliveries_once_recorded(admin: Api, webhook_id: str, count: int) -> dict[str, Any]:
    """The delivery log once it holds ``count`` attempts: the receiver has a
    delivery as soon as the request arrives, the dispatcher records the
    attempt only once the answer is back, so reading the log at once can
    find one short (CI did)."""
    log: dict[str, Any] = {}

    async def recorded() -> bool:
        nonlocal log
        status, log, _ = await admin.get(f"/v1/webhooks/{webhook_id}/deliveries")
        assert status == 200, log
        return len(log["items"]) >= count

    await wait_until(recorded)
    return log

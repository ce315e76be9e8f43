"""POST /v1/webhooks/{id}/test through the real server, received by a real
receiver and by the receiver example in docs/examples/receiver.py."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
import standardwebhooks
from aiohttp import web

from tests.e2e.conftest import Api
from tests.support.server import ADMIN_TOKEN, ServerProcess, running_server
from tests.support.waiting import wait_until

pytestmark = pytest.mark.db

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "receiver.py"
ENV = {"MENTORFLOW_WEBHOOK_ALLOW_PRIVATE": "1", "MENTORFLOW_WEBHOOK_RETRY_SCHEDULE": "1,1"}


@pytest.fixture(scope="module")
def server(dsn: str) -> Any:
    with running_server(dsn, **ENV) as process:
        yield process


@asynccontextmanager
async def _admin(server: ServerProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, server.url, ADMIN_TOKEN)


@asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mentorflow_docs_receiver", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_a_test_message_reaches_an_endpoint_subscribed_to_other_types(
    server: ServerProcess,
) -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    async with _serve(app) as url, _admin(server) as admin:
        status, created, _ = await admin.post(
            "/v1/webhooks", {"url": url, "event_types": ["relationship.meeting.held"]}
        )
        assert status == 201, created
        webhook_id = created["id"]
        for _ in range(2):  # twice: each is a message of its own
            status, queued, _ = await admin.post(f"/v1/webhooks/{webhook_id}/test")
            assert status == 202, queued
            assert queued["state"] == "pending"
        await wait_until(lambda: len(received) == 2)

        ids = set()
        for headers, body in received:
            standardwebhooks.Webhook(created["secret"]).verify(body, headers)
            assert headers["Content-Type"] == "application/cloudevents+json"
            event = json.loads(body)
            assert event["type"] == "org.mentorflow.webhook.test"
            assert event["source"] == f"/webhooks/{webhook_id}"
            assert event["id"] == headers["webhook-id"]
            assert event["data"]["webhook_id"] == webhook_id
            assert event["data"]["sent_at"] == event["time"]
            ids.add(event["id"])
        assert len(ids) == 2

        status, log, _ = await admin.get(f"/v1/webhooks/{webhook_id}/deliveries")
        assert status == 200 and len(log["items"]) == 2
        item = log["items"][0]
        assert item["webhook_type"] == "webhook.test" and item["status_code"] == 204
        assert item["relationship_id"] is None and item["position"] is None
        assert item["webhook_id"] in ids


async def test_unknown_deleted_and_not_an_admin(server: ServerProcess) -> None:
    async with _admin(server) as admin:
        status, problem, _ = await admin.post(f"/v1/webhooks/{uuid.uuid4()}/test")
        assert status == 404 and problem["type"].endswith("not-found"), problem
        status, _, _ = await admin.post("/v1/webhooks/not-a-uuid/test")
        assert status in (404, 422)

        status, created, _ = await admin.post(
            "/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "event_types": ["*"]}
        )
        assert status == 201
        writer = admin.as_token(await admin.token_for("writer"))
        status, _, _ = await writer.post(f"/v1/webhooks/{created['id']}/test")
        assert status == 403
        auditor = admin.as_token(await admin.token_for("auditor"))
        status, _, _ = await auditor.post(f"/v1/webhooks/{created['id']}/test")
        assert status == 403

        status, _, _ = await admin.call("DELETE", f"/v1/webhooks/{created['id']}")
        assert status == 204
        status, _, _ = await admin.post(f"/v1/webhooks/{created['id']}/test")
        assert status == 404


async def test_the_docs_receiver_example_accepts_a_verified_test_event(
    server: ServerProcess,
) -> None:
    example = _load_example()
    async with _admin(server) as admin:
        # Subscribe first (the secret is only known then), then point the
        # endpoint at the example once it serves.
        holder: dict[str, Any] = {}
        status, created, _ = await admin.post(
            "/v1/webhooks",
            {"url": "http://127.0.0.1:9/hook", "event_types": ["relationship.phase_changed"]},
        )
        assert status == 201, created
        app = example.make_app(created["secret"], lambda event: holder.setdefault("event", event))
        async with _serve(app) as url:
            status, patched, _ = await admin.call(
                "PATCH", f"/v1/webhooks/{created['id']}", {"url": url}
            )
            assert status == 200, patched
            status, _, _ = await admin.post(f"/v1/webhooks/{created['id']}/test")
            assert status == 202
            await wait_until(lambda: "event" in holder)
            event = holder["event"]
            assert event["type"] == "org.mentorflow.webhook.test"
            assert event["source"] == f"/webhooks/{created['id']}"
            assert event["data"]["webhook_id"] == created["id"]
            assert len(app[example.EVENTS_KEY]) == 1

            await _refused_when_tampered(url, created["secret"], app, example)


async def _refused_when_tampered(
    url: str, secret: str, app: web.Application, example: ModuleType
) -> None:
    """The same example refuses a body altered after signing (401), and
    accepts the untouched one."""
    body = json.dumps(
        {
            "specversion": "1.0",
            "id": "msg_local",
            "source": "/webhooks/x",
            "type": "org.mentorflow.webhook.test",
            "datacontenttype": "application/json",
            "data": {"webhook_id": "x", "sent_at": "2026-01-01T00:00:00+00:00"},
        }
    ).encode()
    now = int(time.time())
    signer = standardwebhooks.Webhook(secret)
    signature = signer.sign("msg_local", datetime.fromtimestamp(now, UTC), body.decode())
    headers = {
        "Content-Type": "application/cloudevents+json",
        "webhook-id": "msg_local",
        "webhook-timestamp": str(now),
        "webhook-signature": signature,
    }
    tampered = body.replace(b'"x"', b'"y"', 1)
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=tampered, headers=headers) as response:
            assert response.status == 401
        assert len(app[example.EVENTS_KEY]) == 1
        async with session.post(url, data=body, headers=headers) as response:
            assert response.status == 204
        assert len(app[example.EVENTS_KEY]) == 2

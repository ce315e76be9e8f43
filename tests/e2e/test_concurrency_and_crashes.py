"""Concurrent writers, a killed server, a clean stop, and the database going away."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from service.cli import SHUTDOWN_GRACE_S
from tests.e2e.conftest import Api
from tests.e2e.journey import open_relationship
from tests.support.disposable_postgres import DisposablePostgres
from tests.support.server import ADMIN_TOKEN, ServerProcess, running_server

pytestmark = pytest.mark.db

CONCERN = {"type": "concern.raised", "data": {"category": "other", "severity": "low"}}


def events(relationship_id: str) -> str:
    return f"/v1/relationships/{relationship_id}/events"


async def test_same_if_match_thirty_times_exactly_one_wins(api: Api) -> None:
    relationship_id = str((await open_relationship(api))["id"])
    pinned = {"If-Match": '"1"'}
    results = await asyncio.gather(
        *[api.post(events(relationship_id), CONCERN, headers=pinned) for _ in range(30)]
    )
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [201] + [412] * 29
    assert all(body["current_version"] == 2 for status, body, _ in results if status == 412)
    _, state, _ = await api.get(f"/v1/relationships/{relationship_id}")
    assert state["version"] == 2


async def test_fifty_unpinned_posts_all_recorded_with_contiguous_versions(api: Api) -> None:
    relationship_id = str((await open_relationship(api))["id"])
    results = await asyncio.gather(*[api.post(events(relationship_id), CONCERN) for _ in range(50)])
    assert [status for status, _, _ in results] == [201] * 50
    versions = sorted(body["version"] for _, body, _ in results)
    assert versions == list(range(2, 52))
    _, history, _ = await api.get(events(relationship_id) + "?limit=500")
    assert [e["version"] for e in history["items"]] == list(range(1, 52))


async def test_two_server_processes_serialise_one_relationship(
    api: Api, server: ServerProcess, dsn: str
) -> None:
    """Each process orders its own writers; across processes the store's
    version check makes the loser decide again."""
    second = ServerProcess(dsn, server.schema)
    second.start()
    try:
        relationship_id = str((await open_relationship(api))["id"])
        other = Api(api.session, second.url, api.token)
        results = await asyncio.gather(
            *[(api if i % 2 else other).post(events(relationship_id), CONCERN) for i in range(40)]
        )
        assert [status for status, _, _ in results] == [201] * 40
        assert sorted(body["version"] for _, body, _ in results) == list(range(2, 42))
    finally:
        second.close()


@pytest.fixture
def own_server(dsn: str) -> Iterator[ServerProcess]:
    with running_server(dsn) as process:
        yield process


async def _hammer(
    api: Api, relationship_ids: list[str], acknowledged: list[Any], enough: asyncio.Event
) -> None:
    """Post until the server goes away; remember every event that got a 201."""
    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
        while True:
            for relationship_id in relationship_ids:
                status, body, _ = await api.post(events(relationship_id), CONCERN)
                if status == 201:
                    acknowledged.append((body["relationship_id"], body["version"], body["id"]))
                if len(acknowledged) >= 60:
                    enough.set()


async def test_sigkill_under_load_loses_nothing_acknowledged(own_server: ServerProcess) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        admin = Api(session, own_server.url, ADMIN_TOKEN)
        api = admin.as_token(await admin.token_for("writer"))
        relationship_ids = [str((await open_relationship(api))["id"]) for _ in range(4)]
        acknowledged: list[Any] = []
        enough = asyncio.Event()
        writers = [
            asyncio.create_task(_hammer(api, relationship_ids, acknowledged, enough))
            for _ in range(8)
        ]
        await asyncio.wait_for(enough.wait(), 60)
        own_server.kill()
        await asyncio.gather(*writers)

        own_server.start()
        stored: set[tuple[str, int, str]] = set()
        for relationship_id in relationship_ids:
            _, history, _ = await api.get(events(relationship_id) + "?limit=500")
            versions = [e["version"] for e in history["items"]]
            assert versions == list(range(1, len(versions) + 1)), "a gap in a stream"
            stored |= {(relationship_id, e["version"], e["id"]) for e in history["items"][1:]}
        assert set(acknowledged) <= stored, "an acknowledged event was lost"
        # Nothing else: at most the requests in flight at the kill may have
        # committed without their 201 reaching the client.
        assert len(stored - set(acknowledged)) <= 8


async def test_sigterm_finishes_requests_in_flight(own_server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        admin = Api(session, own_server.url, ADMIN_TOKEN)
        api = admin.as_token(await admin.token_for("writer"))
        relationship_id = str((await open_relationship(api))["id"])
        in_flight = [
            asyncio.create_task(api.post(events(relationship_id), CONCERN)) for _ in range(20)
        ]
        await asyncio.sleep(0.01)
        exit_code = await asyncio.to_thread(own_server.terminate)
        results = await asyncio.gather(*in_flight, return_exceptions=True)
    assert exit_code == 0
    answered = [r for r in results if not isinstance(r, BaseException)]
    assert answered, "no request was in flight"
    assert all(status == 201 for status, _, _ in answered)
    assert "stopped" in own_server.logs()


async def test_sigterm_answers_a_body_still_arriving_and_exits_without_waiting_the_grace(
    own_server: ServerProcess,
) -> None:
    """A request whose body is still on its way when SIGTERM lands is
    answered (503 with Connection: close, or its 201), an idle keep-alive
    connection does not hold the process, and the process exits as soon as
    that is done, not after the 30-second grace period."""
    async with aiohttp.ClientSession() as session:
        admin = Api(session, own_server.url, ADMIN_TOKEN)
        relationship_id = str((await open_relationship(admin))["id"])
    body = json.dumps(CONCERN).encode()
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", own_server.port)
    idle_writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await idle_reader.readuntil(b"\r\n\r\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", own_server.port)
    head = (
        f"POST {events(relationship_id)} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body[:5])
    await writer.drain()
    await asyncio.sleep(0.3)  # the handler is now waiting for the rest of the body
    assert own_server.process is not None
    started = time.monotonic()
    own_server.process.send_signal(signal.SIGTERM)
    with contextlib.suppress(ConnectionError):
        writer.write(body[5:])
        await writer.drain()
    async with asyncio.timeout(20):
        reply = await reader.read()
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line.split()[1] in (b"201", b"503"), reply[:300]
    if status_line.split()[1] == b"503":
        assert b"connection: close" in rest.lower()
    exit_code = await asyncio.to_thread(own_server.process.wait, 30)
    elapsed = time.monotonic() - started
    assert exit_code == 0
    assert elapsed < SHUTDOWN_GRACE_S / 2, f"exit took {elapsed:.1f} s: something waited the grace"
    for stream in (writer, idle_writer):
        stream.close()


async def test_database_down_gives_503_and_recovers_without_restart() -> None:
    postgres = DisposablePostgres("down-and-up")
    process = ServerProcess(postgres.url, "mentorflow")
    try:
        process.start()
        async with aiohttp.ClientSession() as session:
            admin = Api(session, process.url, ADMIN_TOKEN)
            api = admin.as_token(await admin.token_for("writer"))
            relationship_id = str((await open_relationship(api))["id"])

            await asyncio.to_thread(postgres.stop)
            status, body, headers = await api.post(events(relationship_id), CONCERN)
            assert status == 503 and body["type"].endswith("/unavailable")
            assert "Retry-After" in headers
            status, _, _ = await api.get(f"/v1/relationships/{relationship_id}")
            assert status == 503
            status, _, _ = await api.as_token(None).get("/readyz")
            assert status == 503
            status, _, _ = await api.as_token(None).get("/healthz")
            assert status == 200

            await asyncio.to_thread(postgres.start)
            status, _, _ = await api.as_token(None).get("/readyz")
            assert status == 200
            status, body, _ = await api.post(events(relationship_id), CONCERN)
            assert status == 201 and body["version"] == 2
    finally:
        process.close()
        postgres.destroy()

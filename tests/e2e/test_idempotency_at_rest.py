"""Stored idempotent responses with a cipher key: nothing confidential in
clear anywhere in the database, and nothing replayed after 24 hours."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import asyncpg
import pytest

from domain import create_cipher_key
from service.access.tokens import Principal
from service.http.idempotency import ResponseKeeper
from service.relationships.application import IdempotencyKey
from service.store.eventstore import EventStore
from tests.e2e.conftest import Api
from tests.e2e.journey import MENTEE, TO_CULTIVATION
from tests.support.server import ADMIN_TOKEN, ServerProcess, running_server

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
def server(dsn: str) -> Iterator[ServerProcess]:
    with running_server(dsn, MENTORFLOW_CIPHER_KEY=create_cipher_key()) as process:
        yield process


@pytest.fixture
async def writer(server: ServerProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        admin = Api(session, server.url, ADMIN_TOKEN)
        yield admin.as_token(await admin.token_for("writer"))


async def _every_value_in_the_schema(dsn: str, schema: str) -> list[tuple[str, str, bytes]]:
    """(table, column, value as bytes) for every column of every row of every table."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        tables = [
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
                schema,
            )
        ]
        values: list[tuple[str, str, bytes]] = []
        for table in tables:
            rows = await conn.fetch(f'SELECT t::text AS whole FROM "{table}" t')  # noqa: S608
            values += [(table, "*", r["whole"].encode()) for r in rows]
            columns = await conn.fetch(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = $1 AND table_name = $2 AND data_type = 'bytea'",
                schema,
                table,
            )
            for column in columns:
                name = column["column_name"]
                rows = await conn.fetch(f'SELECT "{name}" AS v FROM "{table}"')  # noqa: S608
                values += [(table, name, bytes(r["v"])) for r in rows if r["v"] is not None]
        assert "idempotent_responses" in tables and "events" in tables
        return values
    finally:
        await conn.close()


async def test_no_confidential_field_in_clear_anywhere(
    writer: Api, server: ServerProcess, dsn: str
) -> None:
    marker_notes, marker_values = f"nts{uuid.uuid4().hex}", f"vls{uuid.uuid4().hex}"
    key = {"Idempotency-Key": f"at-rest-{uuid.uuid4()}"}
    opening = {"mentee_id": "m"}
    status, opened, _ = await writer.post("/v1/relationships", opening, headers=key)
    assert status == 201
    key = {"Idempotency-Key": f"at-rest-{uuid.uuid4()}"}
    body = {
        "type": TO_CULTIVATION[0][0],
        "data": {**(TO_CULTIVATION[0][1] or {}), "notes": marker_notes, "values": marker_values},
        "actor": MENTEE,
    }
    path = f"/v1/relationships/{opened['id']}/events"
    status, first, _ = await writer.post(path, body, headers=key)
    assert status == 201 and first["data"]["notes"] == marker_notes
    status, again, headers = await writer.post(path, body, headers=key)
    assert status == 201 and again == first and headers["Idempotent-Replayed"] == "true"

    conn = await asyncpg.connect(dsn, server_settings={"search_path": server.schema})
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM idempotent_responses WHERE key = $1", key["Idempotency-Key"]
        )
    finally:
        await conn.close()
    assert stored == 1  # the response is kept (sealed), not merely absent
    values = await _every_value_in_the_schema(dsn, server.schema)
    for marker in (marker_notes, marker_values):
        found = [(table, column) for table, column, value in values if marker.encode() in value]
        assert not found, (marker, found)


async def test_a_response_older_than_24_hours_is_not_replayed(
    writer: Api, server: ServerProcess, dsn: str
) -> None:
    key = {"Idempotency-Key": f"old-{uuid.uuid4()}"}
    status, opened, _ = await writer.post("/v1/relationships", {"mentee_id": "m"}, headers=key)
    assert status == 201
    path = f"/v1/relationships/{opened['id']}/events"
    body = {"type": TO_CULTIVATION[0][0], "data": TO_CULTIVATION[0][1], "actor": MENTEE}
    other_key = {"Idempotency-Key": f"old-{uuid.uuid4()}"}
    status, _, _ = await writer.post(path, body, headers=other_key)
    assert status == 201
    status, _, headers = await writer.post(path, body, headers=other_key)
    assert headers.get("Idempotent-Replayed") == "true"

    conn = await asyncpg.connect(dsn, server_settings={"search_path": server.schema})
    try:
        await conn.execute(
            "UPDATE idempotent_responses SET created_at = now() - interval '24 hours 1 second'"
            " WHERE key = $1",
            other_key["Idempotency-Key"],
        )
        status, answer, headers = await writer.post(path, body, headers=other_key)
        assert "Idempotent-Replayed" not in headers, answer
        created = await conn.fetchval(
            "SELECT created_at > now() - interval '1 minute' FROM idempotent_responses"
            " WHERE key = $1",
            other_key["Idempotency-Key"],
        )
        assert created is True  # the expired row went; this answer is the one kept now
    finally:
        await conn.close()
    status, answer, headers = await writer.post(path, body, headers=other_key)
    assert headers.get("Idempotent-Replayed") == "true", answer


async def test_expired_responses_are_cleaned_up_on_insert(store: EventStore) -> None:
    keeper = ResponseKeeper(store, create_cipher_key())
    who = Principal(uuid.uuid4(), "cleanup", "writer")

    async def rows() -> list[str]:
        return [
            r["key"]
            for r in await store.with_connection(
                lambda conn: conn.fetch("SELECT key FROM idempotent_responses ORDER BY key")
            )
        ]

    scope = IdempotencyKey("k", b"fingerprint")
    for key in ("a-old", "b-old"):
        assert await keeper.save(who, key, scope, 201, {"notes": "x"}, {}) is None
    await store.with_connection(
        lambda conn: conn.execute(
            "UPDATE idempotent_responses SET created_at = now() - interval '25 hours'"
        )
    )
    assert await keeper.lookup(who, "a-old") is None  # ignored and deleted
    assert await rows() == ["b-old"]
    keeper._next_cleanup = 0.0  # as a process does once a minute
    assert await keeper.save(who, "c-new", scope, 201, {"notes": "y"}, {}) is None
    assert await rows() == ["c-new"]
    kept = await keeper.lookup(who, "c-new")
    assert kept is not None and kept["body"] == {"notes": "y"}
    sealed = await store.with_connection(
        lambda conn: conn.fetchval("SELECT body FROM idempotent_responses")
    )
    assert "notes" not in sealed and json.dumps({"notes": "y"}) not in sealed

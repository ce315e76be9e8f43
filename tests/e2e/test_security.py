"""Roles on every route, tokens stored hashed, and logs that hold no secrets."""

from __future__ import annotations

import json
import re

import asyncpg
import pytest

from service.http.app import all_routes
from tests.e2e.conftest import Api
from tests.e2e.journey import TO_CULTIVATION, open_relationship, walk
from tests.support.server import ADMIN_TOKEN, ServerProcess

pytestmark = pytest.mark.db

SAMPLE_ID = "5b0c6f52-7a39-4b8a-9a44-3f2c6a0e0001"


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", SAMPLE_ID, path)


async def test_every_route_enforces_its_roles(api: Api) -> None:
    tokens = {role: await api.token_for(role) for role in ("writer", "auditor", "admin")}
    for route in all_routes():
        path = _concrete(route.path)
        anonymous = await api.as_token(None).call(route.method, path, {})
        if route.roles is None:
            assert anonymous[0] != 401, route.path
            continue
        assert anonymous[0] == 401, (route.method, route.path)
        for role, token in tokens.items():
            status, body, _ = await api.as_token(token).call(route.method, path, {})
            if role in route.roles:
                assert status not in (401, 403), (route.method, route.path, role, body)
            else:
                assert status == 403, (route.method, route.path, role, body)
                assert body["type"].endswith("/forbidden")


async def test_tokens_are_stored_only_as_hashes(api: Api, server: ServerProcess, dsn: str) -> None:
    token = await api.token_for("writer", name="hashed-check")
    conn = await asyncpg.connect(dsn, server_settings={"search_path": server.schema})
    try:
        rows = await conn.fetch("SELECT * FROM api_tokens")
    finally:
        await conn.close()
    dump = repr([dict(r) for r in rows])
    assert token not in dump and token.encode() not in b"".join(r["token_hash"] for r in rows)
    assert any(r["name"] == "hashed-check" for r in rows)


async def test_logs_hold_no_tokens_and_no_confidential_fields(
    api: Api, server: ServerProcess
) -> None:
    relationship_id = str((await open_relationship(api))["id"])
    await walk(api, relationship_id, TO_CULTIVATION)
    await api.get(f"/v1/relationships/{relationship_id}/events")
    await api.post(
        f"/v1/relationships/{relationship_id}/events",
        {"type": "x", "data": {"notes": "secret-note"}},
    )
    logs = server.logs()
    entries = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(entry["msg"] == "request" for entry in entries)
    for secret in (ADMIN_TOKEN, api.token or "", "private thoughts", "candour", "secret-note"):
        assert secret not in logs, secret


async def test_a_writer_cannot_mint_tokens(api: Api) -> None:
    status, body, _ = await api.post("/v1/tokens", {"role": "admin"})
    assert status == 403 and body["type"].endswith("/forbidden")

"""Idempotency-Key on every authenticated POST, not only the event routes: the
same key and body replay the first response and do nothing again; another body
under the key is refused; a credential is replayed only when it can be kept
sealed (with a cipher key), never stored in clear."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from domain import create_cipher_key
from service.http.app import all_routes
from tests.e2e.conftest import Api
from tests.support.server import ADMIN_TOKEN, ServerProcess, running_server

pytestmark = pytest.mark.db


@pytest.fixture(scope="module", params=["plain", "sealed"])
def server(request: pytest.FixtureRequest, dsn: str) -> Iterator[ServerProcess]:
    env = {"MENTORFLOW_WEBHOOK_ALLOW_PRIVATE": "1"}
    if request.param == "sealed":
        env["MENTORFLOW_CIPHER_KEY"] = create_cipher_key()
    with running_server(dsn, **env) as process:
        yield process


@pytest.fixture
async def admin(server: ServerProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, server.url, ADMIN_TOKEN)


def _sealed(server: ServerProcess) -> bool:
    return "MENTORFLOW_CIPHER_KEY" in server._extra_env


async def _twice(api: Api, path: str, body: Any) -> tuple[Any, Any]:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = await api.post(path, body, headers=key)
    again = await api.post(path, body, headers=key)
    assert again[0] == first[0], (first, again)
    assert again[2].get("Idempotent-Replayed") == "true"
    assert first[2].get("Idempotent-Replayed") is None
    other = await api.post(path, {**body, "description": "another body"}, headers=key)
    assert other[0] == 422 and other[1]["type"].endswith("idempotency-conflict"), other
    return first, again


async def test_a_token_is_created_once(admin: Api, server: ServerProcess) -> None:
    name = f"once-{uuid.uuid4().hex[:8]}"
    first, again = await _twice(admin, "/v1/tokens", {"role": "writer", "name": name})
    assert first[0] == 201
    assert {k: v for k, v in again[1].items() if k != "token"} == {
        k: v for k, v in first[1].items() if k != "token"
    }
    assert again[1]["token"] == (first[1]["token"] if _sealed(server) else None)
    _, listed, _ = await admin.get("/v1/tokens?limit=500")
    assert [t["name"] for t in listed["items"]].count(name) == 1
    assert await _nowhere_in_clear(server, first[1]["token"])


async def test_a_webhook_is_subscribed_once_and_tested_once(
    admin: Api, server: ServerProcess
) -> None:
    url = f"http://127.0.0.1:9/{uuid.uuid4().hex}"
    first, again = await _twice(admin, "/v1/webhooks", {"url": url})
    assert first[0] == 201 and again[1]["id"] == first[1]["id"]
    assert again[1]["secret"] == (first[1]["secret"] if _sealed(server) else None)
    _, listed, _ = await admin.get("/v1/webhooks?limit=500")
    assert [w["url"] for w in listed["items"]].count(url) == 1
    assert await _nowhere_in_clear(server, first[1]["secret"])

    hook = first[1]["id"]
    tested, tested_again = await _twice(admin, f"/v1/webhooks/{hook}/test", {})
    assert tested[0] == 202 and tested_again[1] == tested[1]
    _, deliveries, _ = await admin.get(f"/v1/webhooks/{hook}/deliveries")
    assert len({d["delivery_id"] for d in deliveries["items"]}) <= 1

    rotated, rotated_again = await _twice(admin, f"/v1/webhooks/{hook}/rotate-secret", {})
    assert rotated[0] == 200
    assert rotated_again[1]["secret"] == (rotated[1]["secret"] if _sealed(server) else None)


async def test_a_refusal_is_replayed_too(admin: Api, server: ServerProcess) -> None:
    missing = f"/v1/webhooks/{uuid.uuid4()}/test"
    first, again = await _twice(admin, missing, {})
    assert first[0] == 404
    assert {k: v for k, v in again[1].items() if k != "request_id"} == {
        k: v for k, v in first[1].items() if k != "request_id"
    }


def test_every_authenticated_post_declares_the_key() -> None:
    from service.http.app import openapi_document

    paths: Any = openapi_document()["paths"]
    posts = [r for r in all_routes() if r.method == "POST" and r.roles is not None]
    assert len(posts) >= 8
    for route in posts:
        operation = paths[route.path]["post"]
        assert "Idempotency-Key" in [p["name"] for p in operation["parameters"]], route.path
        assert "422" in operation["responses"], route.path


async def _nowhere_in_clear(server: ServerProcess, secret: str) -> bool:
    """The credential is in no stored response in clear (it is hashed or sealed)."""
    conn = await asyncpg.connect(server.dsn, server_settings={"search_path": server.schema})
    try:
        found = await conn.fetchval(
            "SELECT count(*) FROM idempotent_responses WHERE body::text LIKE '%' || $1 || '%'",
            secret,
        )
    finally:
        await conn.close()
    return bool(found == 0)

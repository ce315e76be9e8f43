from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from tests.support.server import ADMIN_TOKEN, ServerProcess, running_server


@pytest.fixture(scope="module")
def server(dsn: str) -> Iterator[ServerProcess]:
    """One real server process per test module, on a schema of its own."""
    with running_server(dsn) as process:
        yield process


class Api:
    """A thin HTTP client: JSON in, (status, JSON or text, headers) out."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str | None):
        self.session = session
        self.base = base
        self.token = token

    def as_token(self, token: str | None) -> Api:
        return Api(self.session, self.base, token)

    async def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, Any]:
        all_headers = dict(headers or {})
        if self.token is not None:
            all_headers.setdefault("Authorization", f"Bearer {self.token}")
        async with self.session.request(
            method, self.base + path, json=json, data=data, headers=all_headers
        ) as response:
            if response.content_type.endswith("json"):
                body = await response.json(content_type=None)
            else:
                body = await response.text()
            return response.status, body, response.headers

    async def post(self, path: str, json: Any = None, **kwargs: Any) -> tuple[int, Any, Any]:
        return await self.call("POST", path, json, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
        return await self.call("GET", path, **kwargs)

    async def token_for(
        self, role: str, name: str | None = None, programs: list[str] | None = None
    ) -> str:
        """A new token (named `role-<random>` unless `name` is given)."""
        name = name or f"{role}-{uuid.uuid4().hex[:12]}"
        request: dict[str, Any] = {"role": role, "name": name}
        if programs is not None:
            request["program_ids"] = programs
        status, body, _ = await self.as_token(ADMIN_TOKEN).post("/v1/tokens", request)
        assert status == 201, body
        token: str = body["token"]
        return token


@pytest.fixture
async def api(server: ServerProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        admin = Api(session, server.url, ADMIN_TOKEN)
        writer = await admin.token_for("writer")
        yield Api(session, server.url, writer)

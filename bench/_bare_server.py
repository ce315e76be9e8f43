"""The HTTP baseline: a bare aiohttp handler doing one asyncpg INSERT per request.

python bench/_bare_server.py DSN SCHEMA PORT [LOOP]

LOOP is `auto`, `uvloop` or `asyncio`, as MENTORFLOW_EVENT_LOOP for the
service: bench/http.py runs both servers on the same loop implementation.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds http.py, which would shadow the standard library's http package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import json  # noqa: E402

import asyncpg  # noqa: E402
from aiohttp import web  # noqa: E402

from service.platform.event_loop import loop_factory  # noqa: E402
from service.store.database import quote_ident  # noqa: E402


async def make_app(dsn: str, schema: str) -> web.Application:
    conn = await asyncpg.connect(dsn)
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
    await conn.close()
    pool = await asyncpg.create_pool(
        dsn, min_size=4, max_size=16, server_settings={"search_path": schema}
    )
    assert pool is not None
    await pool.execute(
        "CREATE TABLE IF NOT EXISTS bare_events"
        " (position bigserial PRIMARY KEY, body jsonb NOT NULL)"
    )
    insert = "INSERT INTO bare_events (body) VALUES ($1::jsonb) RETURNING position"

    async def post(request: web.Request) -> web.Response:
        body = await request.json()
        position = await pool.fetchval(insert, json.dumps(body))
        return web.json_response({"position": position}, status=201)

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/events", post)
    app.router.add_get("/", ready)
    return app


if __name__ == "__main__":
    dsn, schema, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    factory = loop_factory(sys.argv[4] if len(sys.argv) > 4 else "auto")
    loop = factory() if factory is not None else None
    web.run_app(make_app(dsn, schema), host="127.0.0.1", port=port, print=None, loop=loop)

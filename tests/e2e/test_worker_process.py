"""`mentorflow worker`: the projections and webhook dispatch without HTTP,
beside an API-only `serve` (MENTORFLOW_RUN_WORKERS=0), as docker-compose.yml
runs them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.conftest import Api
from tests.support.server import ADMIN_TOKEN, running_server

pytestmark = pytest.mark.db
ROOT = Path(__file__).resolve().parents[2]


async def _listed(api: Api, mentee_id: str, position: int) -> bool:
    status, page, _ = await api.get(
        f"/v1/relationships?mentee_id={mentee_id}&min_position={position}"
    )
    assert status == 200, page
    return any(item["mentee_id"] == mentee_id for item in page["items"])


async def test_an_api_only_server_and_a_worker_process_share_the_work(
    dsn: str, tmp_path: Path
) -> None:
    with running_server(dsn, MENTORFLOW_RUN_WORKERS="0") as server:
        async with aiohttp.ClientSession() as session:
            api = Api(session, server.url, ADMIN_TOKEN)
            status, opened, _ = await api.post("/v1/relationships", {"mentee_id": "before-worker"})
            assert status == 201
            # Nobody projects yet: the list waits its bounded time, then answers without it.
            assert not await _listed(api, "before-worker", opened["position"])

            log = (tmp_path / "worker.log").open("wb")
            worker = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "service.cli",
                "worker",
                env={**os.environ, "DATABASE_URL": dsn, "MENTORFLOW_DB_SCHEMA": server.schema},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
            try:
                assert await _listed(api, "before-worker", opened["position"])
                status, later, _ = await api.post("/v1/relationships", {"mentee_id": "later"})
                assert status == 201 and await _listed(api, "later", later["position"])
            finally:
                worker.send_signal(signal.SIGTERM)
                async with asyncio.timeout(30):
                    code = await worker.wait()
                log.close()
    text = (tmp_path / "worker.log").read_text()
    assert code == 0, text
    assert "this process runs the worker" in text and '"stopped"' in text

"""Every background task of a serving process (projections, webhook outbox and
dispatch, the Merkle tree builder, the checkpoint publisher, the risk worker)
does its work without once failing: the supervisor would restart a failing one
and the service would look healthy, so the failure counter is what tells."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import aiohttp
import pytest

from tests.e2e.conftest import Api
from tests.e2e.journey import TO_CONCLUDED, TO_CULTIVATION, open_relationship, walk
from tests.support.server import ADMIN_TOKEN, ServerProcess, running_server

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
def server(dsn: str) -> Iterator[ServerProcess]:
    with running_server(
        dsn,
        MENTORFLOW_RISK_WORKER="1",
        MENTORFLOW_RISK_INTERVAL="0.2",
        MENTORFLOW_CHECKPOINT_INTERVAL="0.2",
    ) as process:
        yield process


async def test_no_background_task_fails_through_a_whole_lifecycle(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        admin = Api(session, server.url, ADMIN_TOKEN)
        for _ in range(3):
            rid = (await open_relationship(admin))["id"]
            await walk(admin, rid, TO_CULTIVATION + TO_CONCLUDED)
        checkpoint: dict[str, object] = {}
        for _ in range(100):  # the publisher signs the whole log within moments
            status, checkpoint, _ = await admin.get("/v1/checkpoints/latest")
            _, feed, _ = await admin.get("/v1/events?limit=500")
            if status == 200 and checkpoint["tree_size"] == feed["items"][-1]["position"]:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"no checkpoint of the whole log: {checkpoint}")
        await asyncio.sleep(1.0)  # a few more turns of every loop
        status, metrics, _ = await admin.get("/metrics")
    assert status == 200
    failures = re.findall(r"^mentorflow_background_task_failures_total\{.*\} (\S+)$", metrics, re.M)
    assert all(float(count) == 0 for count in failures), failures
    for gauge in ("mentorflow_risk_leader 1.0", "mentorflow_merkle_tree_lag_events 0.0"):
        assert gauge in metrics, gauge
    assert "Traceback" not in server.logs(), server.logs()[-3000:]

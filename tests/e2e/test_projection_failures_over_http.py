"""An event a read model cannot hold, against the real server process: it is
named on /readyz, in /metrics and in the log, the other read models go on, and
a rebuild failing on the same event leaves the old rows served."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import re
from typing import Any

import aiohttp
import pytest

from domain import Relationship, make_mapper
from domain.samples import walk_to
from service import auditor
from service.platform.settings import Settings
from service.relationships.repository import RelationshipRepository
from service.store.eventstore import EventStore
from tests.e2e.conftest import Api
from tests.projections.support import save_all
from tests.support.server import ADMIN_TOKEN, running_server

pytestmark = pytest.mark.db


async def degraded(api: Api) -> dict[str, Any]:
    async with asyncio.timeout(60):  # against a hang only
        while True:
            status, body, _ = await api.get("/readyz")
            assert status == 200, body
            if body["status"] == "degraded":
                return dict(body)
            await asyncio.sleep(0.1)


def metric(text: str, name: str, projection: str) -> float:
    found = re.search(rf'^{name}{{projection="{projection}"}} (\S+)$', text, re.MULTILINE)
    assert found, f"{name} for {projection} not in /metrics"
    return float(found.group(1))


async def test_a_poison_event_degrades_readyz_and_a_failed_rebuild_keeps_the_old_rows(
    dsn: str,
) -> None:
    with running_server(dsn) as server:
        store = await EventStore.open(dsn, server.schema, run_migrations=False)
        repository = RelationshipRepository(store, make_mapper())
        try:
            async with aiohttp.ClientSession() as session:
                admin = Api(session, server.url, ADMIN_TOKEN)
                api = Api(session, server.url, await admin.token_for("writer"))
                first = walk_to("cultivation")
                projected = await save_all(repository, [first])
                status, listed, _ = await api.get(f"/v1/relationships?min_position={projected}")
                assert status == 200 and len(listed["items"]) == 1
                path = f"/v1/relationships/{first.id}/timeline"
                status, timeline, _ = await api.get(f"{path}?min_position={projected}")
                assert status == 200 and len(timeline["items"]) == first.version

                # A stored event the summaries cannot read (its payload no longer
                # decodes); the timeline and the statistics read its envelope only.
                opened = walk_to("reflection").collect_events()[0]
                assert isinstance(opened, Relationship.Event)
                poison = dataclasses.replace(repository.to_new_event(opened), payload=b"{")
                await store.append([poison])
                position = await store.max_position()
                second = walk_to("establishment")
                last = await save_all(repository, [second])

                body = await degraded(api)
                (failing,) = body["failing"]
                assert failing["projection"] == "relationship_summary"
                assert failing["position"] == position and failing["error"]
                assert f"projection relationship_summary failed at position {position}" in (
                    server.logs()
                )
                status, text, _ = await api.get("/metrics")
                assert status == 200
                failures = "mentorflow_projection_failures_total"
                assert metric(text, failures, "relationship_summary") >= 1
                stuck = "mentorflow_projection_stuck_position"
                assert metric(text, stuck, "relationship_summary") == position

                # the others went on past it, to the head of the log
                status, page, _ = await api.get(
                    f"/v1/relationships/{second.id}/timeline?min_position={last}"
                )
                assert status == 200 and len(page["items"]) == second.version
                status, _, _ = await api.get(f"/v1/stats/phases?min_position={last}")
                assert status == 200

                # a rebuild fails on the same event: the old rows keep being served
                settings = Settings(database_url=dsn, db_schema=server.schema)
                err = io.StringIO()
                assert await auditor.rebuild(settings, "relationship_summary", err=err) == 1
                assert f"rebuild of relationship_summary failed at position {position}" in (
                    err.getvalue()
                )
                assert "the serving tables are unchanged" in err.getvalue()
                status, again, _ = await api.get("/v1/relationships")
                assert status == 200
                assert [(i["id"], i["version"]) for i in again["items"]] == [
                    (i["id"], i["version"]) for i in listed["items"]
                ]

                # a rebuild that succeeds swaps in identical rows
                assert await auditor.rebuild(settings, "timeline", err=io.StringIO()) == 0
                status, rebuilt, _ = await api.get(path)
                assert status == 200 and rebuilt == timeline
                assert (await degraded(api))["failing"] == body["failing"]
        finally:
            await store.close()

"""A relationship through all five phases to concluded and into a new cycle,
over HTTP only, against the real server process."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Api
from tests.e2e.journey import TO_CONCLUDED, TO_CULTIVATION, open_relationship, walk
from tests.support.server import ADMIN_TOKEN

pytestmark = pytest.mark.db


async def test_all_five_phases_then_a_new_cycle(api: Api) -> None:
    opened = await open_relationship(api, program_id="p-1", mentee_name="Ada")
    relationship_id = opened["id"]
    assert opened["phase"] == "reflection" and opened["version"] == 1
    assert "identification.started" in opened["allowed_events"]

    recorded = await walk(api, relationship_id, TO_CULTIVATION + TO_CONCLUDED)
    phases = [(e["from_phase"], e["to_phase"]) for e in recorded if "to_phase" in e]
    assert phases == [
        ("reflection", "identification"),
        ("identification", "establishment"),
        ("establishment", "cultivation"),
        ("cultivation", "refinement"),
        ("refinement", "concluded"),
    ]
    assert [e["version"] for e in recorded] == list(range(2, 2 + len(recorded)))
    assert all(e["source"] for e in recorded)

    status, state, headers = await api.get(f"/v1/relationships/{relationship_id}")
    assert status == 200
    assert state["phase"] == "concluded" and state["outcome"] == "goals_achieved"
    assert state["mentor_id"] == "mentor-7"
    assert state["allowed_events"] == []
    assert headers["ETag"] == f'"{state["version"]}"'

    status, history, _ = await api.get(f"/v1/relationships/{relationship_id}/events")
    assert status == 200
    assert [e["version"] for e in history["items"]] == list(range(1, state["version"] + 1))

    status, then, _ = await api.get(f"/v1/relationships/{relationship_id}?version=5")
    assert status == 200 and then["version"] == 5 and then["phase"] == "identification"

    next_cycle = await open_relationship(api, predecessor_id=relationship_id)
    assert next_cycle["predecessor_id"] == relationship_id
    assert next_cycle["phase"] == "reflection"


async def test_a_new_cycle_needs_a_concluded_predecessor(api: Api) -> None:
    ongoing = await open_relationship(api)
    status, body, _ = await api.post(
        "/v1/relationships", {"mentee_id": "mentee-1", "predecessor_id": ongoing["id"]}
    )
    assert status == 422
    assert body["errors"][0]["path"] == "predecessor_id"


async def test_time_travel_by_recorded_time(api: Api) -> None:
    opened = await open_relationship(api)
    relationship_id = opened["id"]
    first = await walk(api, relationship_id, TO_CULTIVATION[:1])
    await walk(api, relationship_id, TO_CULTIVATION[1:2])
    as_of = first[0]["recorded_at"]
    status, then, _ = await api.get(f"/v1/relationships/{relationship_id}?as_of={as_of}")
    assert status == 200
    assert then["version"] == 2 and then["phase"] == "reflection"


async def test_global_feed_pages_in_commit_order(api: Api) -> None:
    opened = await open_relationship(api)
    await walk(api, opened["id"], TO_CULTIVATION[:3])
    status, page, _ = await api.get("/v1/events?after=0&limit=2")
    assert status == 200
    positions = [e["position"] for e in page["items"]]
    assert positions == [1, 2]
    status, rest, _ = await api.get(f"/v1/events?cursor={page['next_cursor']}&limit=500")
    assert [e["position"] for e in rest["items"]][:1] == [3]


async def test_auditor_reads_everything_with_confidential_fields_redacted(api: Api) -> None:
    relationship_id = (await open_relationship(api))["id"]
    await walk(api, relationship_id, TO_CULTIVATION[:1])
    auditor = api.as_token(await api.as_token(ADMIN_TOKEN).token_for("auditor"))
    status, history, _ = await auditor.get(f"/v1/relationships/{relationship_id}/events")
    assert status == 200
    reflection = history["items"][1]
    assert reflection["data"]["notes"] == "[redacted]"
    assert reflection["data"]["values"] == "[redacted]"
    assert reflection["data"]["development_areas"] == ["grant writing"]
    status, feed, _ = await auditor.get("/v1/events?limit=500")
    assert "private thoughts" not in str(feed)
    status, history, _ = await api.get(f"/v1/relationships/{relationship_id}/events")
    assert history["items"][1]["data"]["notes"] == "private thoughts about my career"


async def test_the_workflow_is_described_and_drawn(api: Api) -> None:
    status, workflow, _ = await api.get("/v1/workflow")
    assert status == 200 and "transitions" in workflow
    status, mermaid, headers = await api.get("/v1/workflow/diagram?format=mermaid")
    assert status == 200 and "identification" in mermaid
    assert headers["Content-Type"].startswith("text/plain")
    status, _problem, _ = await api.get("/v1/workflow/diagram?format=png")
    assert status == 422


async def test_operations_endpoints_need_no_token(api: Api) -> None:
    anonymous = api.as_token(None)
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        status, _, _ = await anonymous.get(path)
        assert status == 200, path
    status, metrics, _ = await anonymous.get("/metrics")
    assert "mentorflow_http_requests_total" in metrics
    assert "mentorflow_events_appended_total" in metrics

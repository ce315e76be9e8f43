"""Every row of the contract's error table, provoked on purpose; each time the
relationship's version is unchanged afterwards (nothing was recorded)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.e2e.conftest import Api
from tests.e2e.journey import MENTEE, open_relationship, post

pytestmark = pytest.mark.db

PROBLEM = "application/problem+json"


@pytest.fixture
async def relationship(api: Api) -> AsyncIterator[str]:
    relationship_id = str((await open_relationship(api))["id"])
    yield relationship_id
    status, state, _ = await api.get(f"/v1/relationships/{relationship_id}")
    assert status == 200
    assert state["version"] == 1, "a rejected request recorded something"


def assert_problem(status: int, body: Any, headers: Any, expected: int, name: str) -> None:
    assert status == expected, body
    assert headers["Content-Type"].startswith(PROBLEM)
    assert body["type"].endswith("/" + name)
    assert body["status"] == expected
    assert body["title"] and body["detail"]


def events(relationship_id: str) -> str:
    return f"/v1/relationships/{relationship_id}/events"


async def test_400_body_not_json(api: Api, relationship: str) -> None:
    status, body, headers = await api.post(
        events(relationship), data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_problem(status, body, headers, 400, "malformed-request")


async def test_400_body_not_an_object(api: Api, relationship: str) -> None:
    status, body, headers = await api.post(events(relationship), ["reflection.recorded"])
    assert_problem(status, body, headers, 400, "malformed-request")


async def test_401_missing_token(api: Api, relationship: str) -> None:
    status, body, headers = await api.as_token(None).post(
        events(relationship), {"type": "concern.raised"}
    )
    assert_problem(status, body, headers, 401, "unauthorized")
    assert headers["WWW-Authenticate"].startswith("Bearer")


async def test_401_unknown_token(api: Api, relationship: str) -> None:
    status, body, headers = await api.as_token("mf_forged").get(f"/v1/relationships/{relationship}")
    assert_problem(status, body, headers, 401, "unauthorized")


async def test_403_auditor_cannot_write(api: Api, relationship: str) -> None:
    auditor = api.as_token(await api.token_for("auditor"))
    status, body, headers = await auditor.post(
        events(relationship),
        {"type": "concern.raised", "data": {"category": "other", "severity": "low"}},
    )
    assert_problem(status, body, headers, 403, "forbidden")


async def test_404_unknown_relationship(api: Api) -> None:
    for path in (
        "/v1/relationships/5b0c6f52-7a39-4b8a-9a44-3f2c6a0e0001",
        "/v1/relationships/not-a-uuid",
    ):
        status, body, headers = await api.get(path)
        assert_problem(status, body, headers, 404, "not-found")
    status, body, headers = await api.post(
        "/v1/relationships/5b0c6f52-7a39-4b8a-9a44-3f2c6a0e0001/events",
        {"type": "concern.raised", "data": {"category": "other", "severity": "low"}},
    )
    assert_problem(status, body, headers, 404, "not-found")


async def test_409_not_accepted_in_this_phase(api: Api, relationship: str) -> None:
    status, body, headers = await api.post(
        events(relationship), {"type": "meeting.held", "data": {"held_at": "2026-01-01T10:00:00Z"}}
    )
    assert_problem(status, body, headers, 409, "invalid-transition")
    assert body["current_phase"] == "reflection"
    assert body["paused"] is False
    assert "identification.started" in body["allowed_events"]


async def test_412_if_match_mismatch(api: Api, relationship: str) -> None:
    status, body, headers = await api.post(
        events(relationship),
        {"type": "concern.raised", "data": {"category": "other", "severity": "low"}},
        headers={"If-Match": '"7"'},
    )
    assert_problem(status, body, headers, 412, "version-conflict")
    assert body["current_version"] == 1


async def test_413_payload_too_large(api: Api, relationship: str) -> None:
    huge = {"type": "concern.raised", "data": {"detail": "x" * (65 * 1024)}}
    status, body, headers = await api.post(events(relationship), huge)
    assert_problem(status, body, headers, 413, "payload-too-large")


async def test_415_not_json(api: Api, relationship: str) -> None:
    status, body, headers = await api.post(
        events(relationship), data="type=concern.raised", headers={"Content-Type": "text/plain"}
    )
    assert_problem(status, body, headers, 415, "unsupported-media-type")


async def test_422_validation_error_names_each_path(api: Api, relationship: str) -> None:
    status, body, headers = await api.post(
        events(relationship),
        {
            "type": "reflection.recorded",
            "data": {"author_role": "boss", "development_areas": "one"},
            "actor": {"id": "x", "role": "king"},
        },
    )
    assert_problem(status, body, headers, 422, "validation-error")
    paths = {error["path"] for error in body["errors"]}
    assert "actor.role" in paths


async def test_422_validation_error_in_data(api: Api, relationship: str) -> None:
    status, body, headers = await api.post(
        events(relationship),
        {"type": "reflection.recorded", "data": {"author_role": "boss", "development_areas": 3}},
    )
    assert_problem(status, body, headers, 422, "validation-error")
    paths = {error["path"] for error in body["errors"]}
    assert {"data.author_role", "data.kind", "data.development_areas"} <= paths


async def test_422_unknown_event_type(api: Api, relationship: str) -> None:
    status, body, headers = await api.post(events(relationship), {"type": "party.thrown"})
    assert_problem(status, body, headers, 422, "validation-error")
    assert body["errors"][0]["path"] == "type"


async def test_422_guard_failed(api: Api, relationship: str) -> None:
    status, body, headers = await api.post(events(relationship), {"type": "identification.started"})
    assert_problem(status, body, headers, 422, "guard-failed")
    assert body["unmet"] and "initial" in body["unmet"][0]


async def test_422_idempotency_key_reused_with_another_body(api: Api) -> None:
    relationship_id = str((await open_relationship(api))["id"])
    key = {"Idempotency-Key": "same-key"}
    first = {"type": "concern.raised", "data": {"category": "other", "severity": "low"}}
    status, _recorded, _ = await api.post(events(relationship_id), first, headers=key)
    assert status == 201
    other = {"type": "concern.raised", "data": {"category": "bias", "severity": "high"}}
    status, body, headers = await api.post(events(relationship_id), other, headers=key)
    assert_problem(status, body, headers, 422, "idempotency-conflict")
    status, state, _ = await api.get(f"/v1/relationships/{relationship_id}")
    assert state["version"] == 2


async def test_idempotent_repeat_returns_first_response_and_records_nothing(api: Api) -> None:
    relationship_id = str((await open_relationship(api))["id"])
    key = {"Idempotency-Key": "retry-me"}
    body = {"type": "concern.raised", "data": {"category": "other", "severity": "low"}}
    first = await api.post(events(relationship_id), body, headers=key)
    again = await api.post(events(relationship_id), body, headers=key)
    assert first[0] == again[0] == 201
    assert first[1] == again[1]
    _status, state, _ = await api.get(f"/v1/relationships/{relationship_id}")
    assert state["version"] == 2
    # an error answer is replayed the same way
    wrong = {"type": "identification.started"}
    refused = await api.post(events(relationship_id), wrong, headers={"Idempotency-Key": "e"})
    repeated = await api.post(events(relationship_id), wrong, headers={"Idempotency-Key": "e"})
    assert refused[0] == repeated[0] == 422
    assert {k: v for k, v in refused[1].items() if k != "request_id"} == repeated[1]


async def test_idempotent_create_returns_the_same_relationship(api: Api) -> None:
    key = {"Idempotency-Key": "create-once"}
    first = await api.post("/v1/relationships", {"mentee_id": "m-9"}, headers=key)
    again = await api.post("/v1/relationships", {"mentee_id": "m-9"}, headers=key)
    assert first[0] == again[0] == 201
    assert first[1]["id"] == again[1]["id"]


async def test_unknown_members_of_an_event_body_are_refused(api: Api, relationship: str) -> None:
    status, body, headers = await api.post(
        events(relationship), {"type": "concern.raised", "dta": {}}
    )
    assert_problem(status, body, headers, 422, "validation-error")
    assert body["errors"][0]["path"] == "dta"


async def test_bad_query_parameters_are_validation_errors(api: Api, relationship: str) -> None:
    for query in ("version=0", "version=x", "as_of=yesterday", "as_of=2026-01-01T00:00:00"):
        status, body, headers = await api.get(f"/v1/relationships/{relationship}?{query}")
        assert_problem(status, body, headers, 422, "validation-error")
    status, body, headers = await api.get("/v1/events?limit=501")
    assert_problem(status, body, headers, 422, "validation-error")
    status, body, headers = await api.get("/v1/events?cursor=forged")
    assert_problem(status, body, headers, 422, "validation-error")
    _status, feed, _headers = await api.get("/v1/events?limit=1")
    elsewhere = f"/v1/relationships/{relationship}/events?cursor={feed['next_cursor']}"
    status, body, headers = await api.get(elsewhere)  # a cursor of another list
    assert_problem(status, body, headers, 422, "validation-error")
    assert body["errors"][0]["path"] == "query.cursor"


async def test_malformed_if_match(api: Api, relationship: str) -> None:
    status, body, headers = await api.post(
        events(relationship), {"type": "concern.raised"}, headers={"If-Match": "three"}
    )
    assert_problem(status, body, headers, 400, "malformed-request")


async def test_problem_bodies_carry_the_request_id(api: Api, relationship: str) -> None:
    _status, body, headers = await api.get(
        f"/v1/relationships/{relationship}?version=x", headers={"X-Request-Id": "trace-42"}
    )
    assert body["request_id"] == "trace-42" == headers["X-Request-Id"]
    json.dumps(body)


async def test_posting_the_same_event_twice_without_a_key_records_twice(
    api: Api,
) -> None:
    relationship_id = str((await open_relationship(api))["id"])
    await post(
        api, relationship_id, "concern.raised", {"category": "other", "severity": "low"}, MENTEE
    )
    await post(
        api, relationship_id, "concern.raised", {"category": "other", "severity": "low"}, MENTEE
    )
    _status, state, _ = await api.get(f"/v1/relationships/{relationship_id}")
    assert state["version"] == 3

"""Tokens have identities: ids, unique names (one reserved), revocation that
every process sees within a second, idempotency keys scoped to the id, and
program limits enforced on every route. Each rule is broken on purpose here,
over HTTP against the real server."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.http.app import all_routes
from service.http.routing import RELATIONSHIP_PATH
from tests.e2e.conftest import Api
from tests.e2e.journey import MENTEE, TO_CULTIVATION
from tests.support.database import drop_schema_sync, new_schema_name
from tests.support.server import ADMIN_TOKEN, ServerProcess

pytestmark = pytest.mark.db

NAME_RULE = re.compile(r"[a-z0-9._-]{1,64}")
REFLECTION = {"type": TO_CULTIVATION[0][0], "data": TO_CULTIVATION[0][1], "actor": MENTEE}


def _admin(api: Api) -> Api:
    return api.as_token(ADMIN_TOKEN)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def _create(api: Api, **fields: Any) -> tuple[int, Any]:
    status, body, _ = await _admin(api).post("/v1/tokens", fields)
    return status, body


async def _all_tokens(api: Api) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    path = "/v1/tokens?limit=2"
    while True:
        status, body, _ = await _admin(api).get(path)
        assert status == 200, body
        items += body["items"]
        if body["next_cursor"] is None:
            return items
        path = f"/v1/tokens?limit=2&cursor={body['next_cursor']}"


# --- identity, listing, names ---------------------------------------------------------------


async def test_a_new_token_has_an_id_and_the_list_never_shows_a_token(
    api: Api, server: ServerProcess, dsn: str
) -> None:
    name = _unique("identity")
    status, created = await _create(api, role="writer", name=name, program_ids=["p1", "p2"])
    assert status == 201, created
    assert set(created) == {"id", "name", "role", "program_ids", "created_at", "token"}
    assert created["name"] == name and created["role"] == "writer"
    assert sorted(created["program_ids"]) == ["p1", "p2"]
    uuid.UUID(created["id"])

    listed = {item["id"]: item for item in await _all_tokens(api)}
    mine = listed[created["id"]]
    assert set(mine) == {
        "id", "name", "role", "program_ids", "created_at", "last_used_at", "revoked_at"
    }  # fmt: skip
    assert mine["last_used_at"] is None and mine["revoked_at"] is None
    conn = await asyncpg.connect(dsn, server_settings={"search_path": server.schema})
    try:
        hashes = [
            r["token_hash"].hex() for r in await conn.fetch("SELECT token_hash FROM api_tokens")
        ]
    finally:
        await conn.close()
    page = json.dumps(list(listed.values()))
    assert created["token"] not in page and not any(h in page for h in hashes)

    status, _, _ = await api.as_token(created["token"]).get("/v1/workflow")
    assert status == 200
    listed = {item["id"]: item for item in await _all_tokens(api)}
    assert listed[created["id"]]["last_used_at"] is not None


async def test_the_bootstrap_name_is_reserved(api: Api) -> None:
    status, body = await _create(api, role="admin", name="bootstrap-admin")
    assert status == 422 and body["type"].endswith("/validation-error"), body
    assert body["errors"][0]["path"] == "name"


async def test_names_are_never_reused_not_even_after_revocation(api: Api) -> None:
    name = _unique("once")
    status, first = await _create(api, role="writer", name=name)
    assert status == 201
    status, body = await _create(api, role="auditor", name=name)
    assert status == 422 and body["errors"][0]["path"] == "name", body
    assert (await _admin(api).call("DELETE", f"/v1/tokens/{first['id']}"))[0] == 204
    status, body = await _create(api, role="writer", name=name)
    assert status == 422, body


@pytest.mark.parametrize(
    "name",
    ["", "Upper", "with space", "x" * 65, "ümlaut", "tab\t", "slash/", "new\nline", 7, None],
)
async def test_names_outside_the_rule_are_refused(api: Api, name: object) -> None:
    status, body = await _create(api, role="writer", name=name)
    assert status == 422 and any(e["path"] == "name" for e in body["errors"]), body


async def test_a_name_of_64_characters_is_accepted(api: Api) -> None:
    name = _unique("n") + "." * (64 - 14)
    assert len(name) == 64
    assert (await _create(api, role="auditor", name=name))[0] == 201


@pytest.mark.parametrize(
    "fields",
    [
        {"role": "admin", "program_ids": ["p1"]},
        {"role": "writer", "program_ids": []},
        {"role": "writer", "program_ids": "p1"},
        {"role": "writer", "program_ids": [""]},
        {"role": "writer", "program_ids": [1]},
        {"role": "writer", "scopes": ["x"]},
        {"role": "owner"},
    ],
)
async def test_bad_token_requests_are_refused(api: Api, fields: dict[str, Any]) -> None:
    status, body = await _create(api, name=_unique("bad"), **fields)
    assert status == 422 and body["type"].endswith("/validation-error"), body


def _post_token(server: ServerProcess, name: object) -> int:
    request = urllib.request.Request(
        server.url + "/v1/tokens",
        data=json.dumps({"role": "auditor", "name": name}).encode(),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code


_SEEN: set[str] = set()


@given(
    name=st.one_of(
        st.from_regex(NAME_RULE, fullmatch=True),
        st.text(max_size=70),
        st.text(alphabet="abcXYZ019._-/ é", min_size=1, max_size=66),
    )
)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_a_name_is_accepted_iff_it_follows_the_rule(server: ServerProcess, name: str) -> None:
    status = _post_token(server, name)
    valid = NAME_RULE.fullmatch(name) is not None and name != "bootstrap-admin"
    if valid and name not in _SEEN:
        assert status == 201, name
        _SEEN.add(name)
    else:
        assert status == 422, name


# --- revocation -----------------------------------------------------------------------------


async def test_a_revoked_token_answers_401(api: Api) -> None:
    status, created = await _create(api, role="writer", name=_unique("revoked"))
    assert status == 201
    holder = api.as_token(created["token"])
    assert (await holder.get("/v1/workflow"))[0] == 200
    status, body, _ = await _admin(api).call("DELETE", f"/v1/tokens/{created['id']}")
    assert status == 204, body
    status, body, headers = await holder.get("/v1/workflow")
    assert status == 401 and body["type"].endswith("/unauthorized")
    assert "WWW-Authenticate" in headers
    listed = {item["id"]: item for item in await _all_tokens(api)}
    assert listed[created["id"]]["revoked_at"] is not None
    assert (await _admin(api).call("DELETE", f"/v1/tokens/{created['id']}"))[0] == 204
    assert (await _admin(api).call("DELETE", f"/v1/tokens/{uuid.uuid4()}"))[0] == 404
    assert (await _admin(api).call("DELETE", "/v1/tokens/not-an-id"))[0] == 404


async def test_a_revocation_reaches_another_process_within_a_second(dsn: str) -> None:
    schema = new_schema_name("e2e")
    first = ServerProcess(dsn, schema, MENTORFLOW_RUN_WORKERS="0")
    second = ServerProcess(dsn, schema, MENTORFLOW_RUN_WORKERS="0")
    try:
        first.start()
        second.start()
        async with aiohttp.ClientSession() as session:
            on_first = Api(session, first.url, ADMIN_TOKEN)
            status, created = await _create(on_first, role="writer", name="two-processes")
            assert status == 201
            on_second = Api(session, second.url, created["token"])
            assert (await on_second.get("/v1/workflow"))[0] == 200  # cached there now
            assert (await on_first.call("DELETE", f"/v1/tokens/{created['id']}"))[0] == 204
            revoked_at = time.monotonic()
            while (await on_second.get("/v1/workflow"))[0] != 401:
                assert time.monotonic() - revoked_at < 1.0, "still accepted after a second"
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)
            assert (await on_second.get("/v1/workflow"))[0] == 401
    finally:
        first.close()
        second.close()
        drop_schema_sync(dsn, schema)


# --- identity in events and idempotency keys ------------------------------------------------


async def test_an_events_source_is_its_tokens_name(api: Api) -> None:
    name = _unique("source")
    status, created = await _create(api, role="writer", name=name)
    writer = api.as_token(created["token"])
    status, opened, _ = await writer.post("/v1/relationships", {"mentee_id": "m-1"})
    assert status == 201
    status, recorded, _ = await writer.post(f"/v1/relationships/{opened['id']}/events", REFLECTION)
    assert status == 201 and recorded["source"] == name


async def test_idempotency_keys_belong_to_the_token_id(api: Api) -> None:
    one = api.as_token((await _create(api, role="writer", name=_unique("keys-a")))[1]["token"])
    two = api.as_token((await _create(api, role="writer", name=_unique("keys-b")))[1]["token"])
    key = {"Idempotency-Key": "shared-key"}
    body = {"mentee_id": "m-keys"}
    status, first, _ = await one.post("/v1/relationships", body, headers=key)
    assert status == 201
    status, again, headers = await one.post("/v1/relationships", body, headers=key)
    assert again["id"] == first["id"] and headers["Idempotent-Replayed"] == "true"
    status, other, headers = await two.post("/v1/relationships", body, headers=key)
    assert status == 201 and other["id"] != first["id"]
    assert "Idempotent-Replayed" not in headers


# --- programs -------------------------------------------------------------------------------


async def _open_in(api: Api, program: str | None) -> tuple[str, int]:
    fields: dict[str, Any] = {"mentee_id": "m-programs"}
    if program is not None:
        fields["program_id"] = program
    status, opened, _ = await _admin(api).post("/v1/relationships", fields)
    assert status == 201, opened
    status, recorded, _ = await _admin(api).post(
        f"/v1/relationships/{opened['id']}/events", REFLECTION
    )
    assert status == 201, recorded
    return str(opened["id"]), int(recorded["position"])


def _relationship_routes() -> list[tuple[str, str]]:
    """The routes that name a relationship and that a token limited to
    programs (a writer or an auditor, never an admin) may call at all."""
    return [(method, path) for method, path, _ in _relationship_routes_with_roles()]


def _relationship_routes_with_roles() -> list[tuple[str, str, frozenset[str] | None]]:
    return [
        (route.method, route.path, route.roles)
        for route in all_routes()
        if (route.path == RELATIONSHIP_PATH or route.path.startswith(RELATIONSHIP_PATH + "/"))
        and (route.roles is None or route.roles & {"writer", "auditor"})
    ]


def test_the_scoping_rule_covers_the_routes_that_name_a_relationship() -> None:
    paths = {path for _, path in _relationship_routes()}
    assert {
        "/v1/relationships/{id}",
        "/v1/relationships/{id}/events",
        "/v1/relationships/{id}/timeline",
        "/v1/relationships/{id}/audit",
        "/v1/relationships/{id}/audit/verify",
    } <= paths


@pytest.fixture
async def programs(api: Api) -> dict[str, Any]:
    """Two relationships in program A, one in B, one in none, and tokens limited to A."""
    a, b = _unique("prog-a"), _unique("prog-b")
    in_a = [await _open_in(api, a), await _open_in(api, a)]
    in_b = await _open_in(api, b)
    in_none = await _open_in(api, None)
    writer = (await _create(api, role="writer", name=_unique("limited-w"), program_ids=[a]))[1]
    auditor = (await _create(api, role="auditor", name=_unique("limited-a"), program_ids=[a]))[1]
    return {
        "a": a,
        "b": b,
        "in_a": [rid for rid, _ in in_a],
        "others": [in_b[0], in_none[0]],
        "last_position": max(p for _, p in [*in_a, in_b, in_none]),
        "writer": api.as_token(writer["token"]),
        "auditor": api.as_token(auditor["token"]),
    }


async def test_another_programs_relationship_is_404_on_every_relationship_route(
    programs: dict[str, Any],
) -> None:
    for role in ("writer", "auditor"):
        limited = programs[role]
        for method, path, roles in _relationship_routes_with_roles():
            for other in programs["others"]:
                body = REFLECTION if method == "POST" else None
                status, answer, _ = await limited.call(method, path.replace("{id}", other), body)
                if status == 403:  # the role may not use this route at all
                    assert roles is not None and role not in roles, (role, method, path)
                    continue
                assert status == 404, (method, path, answer)
                assert answer["type"].endswith("/not-found")
                assert other not in json.dumps(answer).replace(f"no relationship {other}", "")


async def test_its_own_programs_relationships_stay_reachable(programs: dict[str, Any]) -> None:
    mine = programs["in_a"][0]
    for method, path in _relationship_routes():
        concrete = path.replace("{id}", mine)
        if method == "POST":
            status, answer, _ = await programs["writer"].post(
                concrete, {"type": "identification.started", "actor": MENTEE}
            )
            assert status == 201, (path, answer)
        else:
            status, answer, _ = await programs["auditor"].get(concrete)
            assert status == 200, (path, answer)


async def test_opening_a_relationship_elsewhere_is_403(programs: dict[str, Any]) -> None:
    writer = programs["writer"]
    for fields in ({"program_id": programs["b"]}, {}, {"program_id": None}):
        status, body, _ = await writer.post("/v1/relationships", {"mentee_id": "m", **fields})
        assert status == 403 and body["type"].endswith("/forbidden"), (fields, body)
    status, body, _ = await writer.post(
        "/v1/relationships", {"mentee_id": "m", "program_id": programs["a"]}
    )
    assert status == 201, body
    status, body, _ = await writer.post(
        "/v1/relationships",
        {"mentee_id": "m", "program_id": programs["a"], "predecessor_id": programs["others"][0]},
    )
    assert status == 422 and "does not exist" in json.dumps(body), body


async def test_lists_feed_and_statistics_show_only_its_programs(
    programs: dict[str, Any],
) -> None:
    wait = f"min_position={programs['last_position']}"
    for limited in (programs["writer"], programs["auditor"]):
        status, listed, _ = await limited.get(f"/v1/relationships?limit=500&{wait}")
        assert status == 200, listed
        assert sorted(item["id"] for item in listed["items"]) == sorted(programs["in_a"])
        status, listed, _ = await limited.get(f"/v1/relationships?program_id={programs['b']}")
        assert status == 200 and listed["items"] == []

        seen: set[str] = set()
        path = "/v1/events?limit=3"
        while True:
            status, feed, _ = await limited.get(path)
            assert status == 200, feed
            seen |= {item["relationship_id"] for item in feed["items"]}
            if feed["next_cursor"] is None:
                break
            path = f"/v1/events?limit=3&cursor={feed['next_cursor']}"
        assert set(programs["in_a"]) <= seen
        assert not seen & set(programs["others"])
        status, again, _ = await limited.get(f"/v1/events?after={feed['next_after']}")
        assert status == 200 and not {i["relationship_id"] for i in again["items"]} - seen

        status, stats, _ = await limited.get(f"/v1/stats/phases?{wait}")
        assert status == 200, stats
        assert stats["relationships"] == len(programs["in_a"])
        assert stats["phases"]["reflection"]["count"] == len(programs["in_a"])

        status, network, _ = await limited.get(f"/v1/mentees/m-programs?{wait}")
        assert status == 200, network
        shown = {item["id"] for item in network["relationships"]}
        assert set(programs["in_a"]) <= shown and not shown & set(programs["others"])
        assert {item["program_id"] for item in network["relationships"]} == {programs["a"]}
        status, missing, _ = await limited.get("/v1/mentees/nobody-at-all")
        assert status == 404 and missing["type"].endswith("/not-found"), missing


async def test_routes_that_do_not_scope_by_program_refuse_a_limited_token(
    programs: dict[str, Any],
) -> None:
    for route in all_routes():
        if route.roles is None or route.program_scoped or route.path.startswith(RELATIONSHIP_PATH):
            continue
        concrete = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), route.path)
        status, body, _ = await programs["writer"].call(route.method, concrete, {})
        assert status == 403, (route.method, route.path, body)


async def test_a_relationship_without_its_program_row_is_scoped_by_its_opening_event(
    api: Api, programs: dict[str, Any], server: ServerProcess, dsn: str
) -> None:
    """Relationships opened before relationship_programs existed (and not yet
    projected when it was filled) get their row from their opening event."""
    other, _ = await _open_in(api, programs["b"])
    mine, _ = await _open_in(api, programs["a"])
    conn = await asyncpg.connect(dsn, server_settings={"search_path": server.schema})
    try:
        await conn.execute(
            "DELETE FROM relationship_programs WHERE stream_id = ANY($1::uuid[])", [other, mine]
        )
        assert (await programs["writer"].get(f"/v1/relationships/{other}"))[0] == 404
        assert (await programs["writer"].get(f"/v1/relationships/{mine}"))[0] == 200
        rows = await conn.fetch(
            "SELECT stream_id::text AS id, program_id FROM relationship_programs"
            " WHERE stream_id = ANY($1::uuid[])",
            [other, mine],
        )
    finally:
        await conn.close()
    assert {r["id"]: r["program_id"] for r in rows} == {
        other: programs["b"],
        mine: programs["a"],
    }

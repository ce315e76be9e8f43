"""Erasure of personal data over HTTP, against a real server process: the
journey, the roles, the 409 without a cipher key, and a scan of every table
of the schema for each erased value (also with Hypothesis-generated text)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import ERASED, create_cipher_key
from tests.e2e.conftest import Api
from tests.e2e.journey import MENTEE, MENTOR, open_relationship, post
from tests.support.receiver import serving
from tests.support.server import ADMIN_TOKEN, ServerProcess, running_server
from tests.support.waiting import wait_until

pytestmark = pytest.mark.db

ROOT = Path(__file__).resolve().parents[2]
CIPHER_KEY = create_cipher_key()
SCANNED_TYPES = ("text", "character varying", "character", "json", "jsonb", "bytea")


@pytest.fixture(scope="module")
def keyed_server(dsn: str) -> Iterator[ServerProcess]:
    env = {
        "MENTORFLOW_CIPHER_KEY": CIPHER_KEY,
        "MENTORFLOW_WEBHOOK_ALLOW_PRIVATE": "1",
        "MENTORFLOW_WEBHOOK_RETRY_SCHEDULE": "1,1",
    }
    with running_server(dsn, **env) as process:
        yield process


@pytest.fixture
async def admin(keyed_server: ServerProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, keyed_server.url, ADMIN_TOKEN)


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        return web.Response(status=204)

    def types(self) -> list[str]:
        return [json.loads(body)["type"] for body in self.bodies]


def _forms(text: str) -> list[bytes]:
    """The byte strings that would show ``text`` in clear: UTF-8, and as JSON
    would write it (escaped or not)."""
    forms = {
        text.encode(),
        json.dumps(text)[1:-1].encode(),
        json.dumps(text, ensure_ascii=False)[1:-1].encode(),
    }
    return sorted(forms)


async def scan_schema(dsn: str, schema: str) -> list[tuple[str, str, bytes]]:
    """(table, column, value) for every text, json(b) and bytea column of every
    row of every table of the schema (from information_schema)."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        columns = await conn.fetch(
            "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c"
            " JOIN information_schema.tables t USING (table_schema, table_name)"
            " WHERE c.table_schema = $1 AND t.table_type = 'BASE TABLE'"
            " AND c.data_type = ANY($2::text[])",
            schema,
            list(SCANNED_TYPES),
        )
        values: list[tuple[str, str, bytes]] = []
        for column in columns:
            table, name = column["table_name"], column["column_name"]
            cast = "" if column["data_type"] == "bytea" else "::text"
            rows = await conn.fetch(f'SELECT "{name}"{cast} AS v FROM "{table}"')  # noqa: S608
            for row in rows:
                value = row["v"]
                if value is not None:
                    values.append((table, name, bytes(value) if cast == "" else value.encode()))
        tables = {c["table_name"] for c in columns}
        assert {"events", "snapshots", "idempotent_responses", "data_keys"} <= tables
        assert {"relationship_summaries", "webhook_messages"} <= tables
        return values
    finally:
        await conn.close()


def found_in(values: list[tuple[str, str, bytes]], text: str) -> list[tuple[str, str]]:
    forms = _forms(text)
    return sorted({(t, c) for t, c, v in values if any(form in v for form in forms)})


def _markers() -> dict[str, str]:
    names = [
        *("name", "values", "work_style", "notes", "area", "rationale", "met_notes"),
        *("objective", "statement", "measure", "location", "channel", "feedback_plan"),
        *("confidentiality", "boundaries", "agenda", "topic", "action", "held_notes"),
        *("goal_note", "comment", "detail", "pause_reason"),
    ]
    return {name: f"{name}-{uuid.uuid4().hex}" for name in names}


def _steps(m: dict[str, str]) -> list[tuple[str, dict[str, Any] | None, dict[str, str]]]:
    agreement = {
        "objectives": [m["objective"]],
        "goals": [
            {
                "id": "g1",
                "statement": m["statement"],
                "measure": m["measure"],
                "target_date": "2026-09-30",
            }
        ],
        "cadence": {"frequency": "monthly", "location": m["location"]},
        "communication_channel": m["channel"],
        "feedback_plan": m["feedback_plan"],
        "confidentiality": m["confidentiality"],
        "boundaries": m["boundaries"],
        "start_date": "2026-02-01",
        "end_date": "2027-01-31",
    }
    reflection = {
        "author_role": "mentee",
        "kind": "initial",
        "development_areas": [m["area"]],
        "values": m["values"],
        "work_style": m["work_style"],
        "notes": m["notes"],
    }
    return [
        ("reflection.recorded", reflection, MENTEE),
        ("identification.started", None, MENTEE),
        ("candidate.proposed", {"mentor_id": "mentor-7", "rationale": m["rationale"]}, MENTEE),
        (
            "candidate.met",
            {"mentor_id": "mentor-7", "met_at": "2026-01-20T15:00:00Z", "notes": m["met_notes"]},
            MENTEE,
        ),
        ("mentor.selected", {"mentor_id": "mentor-7", "mentor_consent": True}, MENTEE),
        ("agreement.proposed", agreement, MENTEE),
        ("agreement.signed", {"by": "mentee", "agreement_version": 1}, MENTEE),
        ("agreement.signed", {"by": "mentor", "agreement_version": 1}, MENTOR),
        ("relationship.established", None, MENTEE),
        (
            "meeting.scheduled",
            {"meeting_id": "mt1", "scheduled_for": "2026-02-10T15:00:00Z", "agenda": [m["agenda"]]},
            MENTEE,
        ),
        (
            "meeting.held",
            {
                "meeting_id": "mt1",
                "held_at": "2026-02-10T15:00:00Z",
                "topics": [m["topic"]],
                "action_items": [{"id": "a1", "description": m["action"], "owner": "mentee"}],
                "notes": m["held_notes"],
            },
            MENTEE,
        ),
        (
            "goal.progressed",
            {"goal_id": "g1", "status": "on_track", "note": m["goal_note"]},
            MENTOR,
        ),
        ("feedback.given", {"from_role": "mentor", "rating": 5, "comment": m["comment"]}, MENTOR),
        ("concern.raised", {"category": "other", "severity": "low", "detail": m["detail"]}, MENTEE),
        ("relationship.paused", {"reason": m["pause_reason"]}, MENTEE),
    ]


async def test_erasure_journey(admin: Api, keyed_server: ServerProcess, dsn: str) -> None:
    receiver = Receiver()
    async with serving(receiver.handle) as url:
        await _journey(admin, keyed_server, dsn, receiver, url)


async def _journey(
    admin: Api, server: ServerProcess, dsn: str, receiver: Receiver, url: str
) -> None:
    writer = admin.as_token(await admin.token_for("writer"))
    auditor = admin.as_token(await admin.token_for("auditor"))
    status, _, _ = await admin.post("/v1/webhooks", {"url": url, "event_types": ["*"]})
    assert status == 201

    m = _markers()
    key = {"Idempotency-Key": f"open-{uuid.uuid4()}"}
    status, opened, _ = await writer.post(
        "/v1/relationships", {"mentee_id": "mentee-1", "mentee_name": m["name"]}, headers=key
    )
    assert status == 201, opened
    rid = opened["id"]
    recorded = []
    for event_type, data, actor in _steps(m):
        body: dict[str, Any] = {"type": event_type, "actor": actor}
        if data is not None:
            body["data"] = data
        key = {"Idempotency-Key": f"{event_type}-{uuid.uuid4()}"}
        status, event, _ = await writer.post(f"/v1/relationships/{rid}/events", body, headers=key)
        assert status == 201, (event_type, event)
        recorded.append(event)
    position = recorded[-1]["position"]
    status, page, _ = await writer.get(f"/v1/relationships?min_position={position}")
    assert status == 200 and m["name"] in str(page)
    before = await scan_schema(dsn, server.schema)
    assert found_in(before, m["name"]) == [("relationship_summaries", "mentee_name")]
    assert not found_in(before, m["notes"]), "sealed in the events, kept nowhere else in clear"

    kept = await _kept_responses(dsn, server.schema, rid)
    assert kept == len(recorded) + 1, "every POST about it kept its response (sealed)"

    # only admins erase; the event type cannot be posted
    erasure = f"/v1/relationships/{rid}/erasure"
    for other in (writer, auditor):
        status, problem, _ = await other.post(erasure, {"reason": "ticket 1"})
        assert status == 403, problem
    status, problem, _ = await admin.post(erasure, {})
    assert status == 422 and problem["errors"][0]["path"] == "reason"
    status, problem, _ = await admin.post(erasure, {"reason": "x", "extra": 1})
    assert status == 422
    status, problem, _ = await writer.post(
        f"/v1/relationships/{rid}/events",
        {"type": "personal_data.erased", "data": {"reason": "x"}},
    )
    assert status == 422 and "erasure" in problem["errors"][0]["message"], problem
    status, problem, _ = await admin.post(
        f"/v1/relationships/{uuid.uuid4()}/erasure", {"reason": "x"}
    )
    assert status == 404

    key = {"Idempotency-Key": f"erase-{uuid.uuid4()}"}
    status, erased, headers = await admin.post(erasure, {"reason": "ticket 1"}, headers=key)
    assert status == 201, erased
    assert erased["type"] == "personal_data.erased" and erased["data"] == {"reason": "ticket 1"}
    assert headers["ETag"] == f'"{erased["version"]}"'
    status, again, headers = await admin.post(erasure, {"reason": "ticket 1"}, headers=key)
    assert status == 201 and again == erased
    status, twice, _ = await admin.post(erasure, {"reason": "another request"})
    assert status == 201 and twice == erased, "erasing again answers the first erasure"

    # new events after the erasure: accepted, their erasable fields not kept
    status, _, _ = await writer.post(
        f"/v1/relationships/{rid}/events",
        {"type": "relationship.resumed", "actor": MENTEE},
    )
    assert status == 201
    late_note = f"late-{uuid.uuid4().hex}"
    status, late, _ = await writer.post(
        f"/v1/relationships/{rid}/events",
        {
            "type": "goal.progressed",
            "data": {"goal_id": "g1", "status": "achieved", "note": late_note},
            "actor": MENTOR,
        },
    )
    assert status == 201 and late["data"]["note"] == ERASED
    last = late["position"]

    # every view, for every role
    views = [
        f"/v1/relationships/{rid}/evidence",
        f"/v1/relationships/{rid}",
        f"/v1/relationships/{rid}?version=2",
        f"/v1/relationships/{rid}?version={erased['version'] - 1}",
        f"/v1/relationships/{rid}/events",
        "/v1/events?limit=500",
        f"/v1/relationships/{rid}/timeline?min_position={last}",
        f"/v1/relationships/{rid}/audit",
        f"/v1/relationships?min_position={last}",
    ]
    secrets = [*m.values(), late_note]
    for api in (admin, writer, auditor):
        for view in views:
            status, body, _ = await api.get(view)
            if api is writer and view.endswith("/evidence"):
                assert status == 403  # auditors and admins only
                continue
            assert status == 200, (view, body)
            text = json.dumps(body, ensure_ascii=False)
            leaked = [s for s in secrets if s in text]
            assert not leaked, (view, leaked)
    _, state, _ = await auditor.get(f"/v1/relationships/{rid}")
    assert state["mentee_name"] == ERASED and state["phase"] == "cultivation"
    assert state["pause"] is None and state["meetings_held"] == 1
    assert state["goals"][0]["statement"] == ERASED and state["goals"][0]["status"] == "achieved"
    _, events, _ = await auditor.get(f"/v1/relationships/{rid}/events")
    notes = [e["data"].get("notes") for e in events["items"] if "notes" in e["data"]]
    assert notes and set(notes) == {ERASED}, "confidential fields read [erased], not [redacted]"
    _, page, _ = await writer.get(f"/v1/relationships?min_position={last}")
    mine = [item for item in page["items"] if item["id"] == rid]
    assert mine and mine[0]["mentee_name"] == ERASED
    status, verdict, _ = await auditor.get(f"/v1/relationships/{rid}/audit/verify")
    assert status == 200 and verdict["valid"] is True, verdict

    # webhooks: the erasure is delivered, and no delivery ever carried a marker
    await wait_until(
        lambda: "org.mentorflow.relationship.personal_data.erased" in receiver.types(), 20
    )
    await wait_until(
        lambda: "org.mentorflow.relationship.goal.progressed" in receiver.types()[-3:], 20
    )
    for delivered in receiver.bodies:
        text = delivered.decode()
        assert not [s for s in secrets if s in text]

    # the database: no plaintext of an erased field in any table, no stored
    # response about the relationship (not even the erasure's own)
    assert await _kept_responses(dsn, server.schema, rid) == 0
    values = await scan_schema(dsn, server.schema)
    for secret in secrets:
        assert not found_in(values, secret), (secret, found_in(values, secret))

    # the command line: replay and verify
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "MENTORFLOW_DB_SCHEMA": server.schema,
        "MENTORFLOW_CIPHER_KEY": CIPHER_KEY,
    }
    replay = _cli(env, "replay", rid)
    assert replay.returncode == 0, replay.stderr
    assert ERASED in replay.stdout and not [s for s in secrets if s in replay.stdout]
    verify = _cli(env, "verify", "--all")
    assert verify.returncode == 0, verify.stdout + verify.stderr


async def _kept_responses(dsn: str, schema: str, relationship_id: str) -> int:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM idempotent_responses WHERE relationship_id = $1",
            uuid.UUID(relationship_id),
        )
        return count
    finally:
        await conn.close()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_erasure_in_every_phase_keeps_the_lifecycle(admin: Api) -> None:
    writer = admin.as_token(await admin.token_for("writer"))
    rid = str((await open_relationship(writer, mentee_name="Ada Lovelace"))["id"])
    status, erased, _ = await admin.post(f"/v1/relationships/{rid}/erasure", {"reason": "r1"})
    assert status == 201 and erased["version"] == 2 and "from_phase" not in erased
    event = await post(
        writer,
        rid,
        "reflection.recorded",
        {"author_role": "mentee", "kind": "initial", "development_areas": ["grant writing"]},
        MENTEE,
    )
    assert event["data"]["development_areas"] == [ERASED]
    event = await post(writer, rid, "identification.started", None, MENTEE)
    assert event["to_phase"] == "identification", "the guard counted the erased area"
    _, state, _ = await writer.get(f"/v1/relationships/{rid}")
    assert state["phase"] == "identification" and state["mentee_name"] == ERASED


async def test_erasure_of_a_concluded_relationship(admin: Api) -> None:
    writer = admin.as_token(await admin.token_for("writer"))
    rid = str((await open_relationship(writer, mentee_name="Grace"))["id"])
    await post(
        writer,
        rid,
        "relationship.withdrawn",
        {"reason_code": "left", "justification": "moved away"},
        MENTEE,
    )
    status, erased, _ = await admin.post(f"/v1/relationships/{rid}/erasure", {"reason": "r"})
    assert status == 201, erased
    _, events, _ = await writer.get(f"/v1/relationships/{rid}/events")
    assert events["items"][1]["data"]["justification"] == ERASED
    _, state, _ = await writer.get(f"/v1/relationships/{rid}")
    assert state["phase"] == "concluded" and state["outcome"] == "withdrawn"


async def test_without_a_cipher_key_erasure_is_unavailable(api: Api) -> None:
    admin = api.as_token(ADMIN_TOKEN)
    rid = str((await open_relationship(api, mentee_name="Ada"))["id"])
    status, problem, _ = await admin.post(f"/v1/relationships/{rid}/erasure", {"reason": "r"})
    assert status == 409, problem
    assert problem["type"].endswith("/erasure-unavailable")
    assert "MENTORFLOW_CIPHER_KEY" in problem["detail"]
    status, problem, _ = await api.post(f"/v1/relationships/{rid}/erasure", {"reason": "r"})
    assert status == 403
    _, state, _ = await api.get(f"/v1/relationships/{rid}")
    assert state["mentee_name"] == "Ada" and state["version"] == 1


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=_TEXT, notes=_TEXT)
def test_generated_text_is_nowhere_in_the_database_after_erasure(
    keyed_server: ServerProcess, dsn: str, name: str, notes: str
) -> None:
    tag = uuid.uuid4().hex[:10]
    name, notes = f"{tag}{name}", f"{notes}{tag}"  # unique, whatever was generated
    asyncio.run(_erase_generated(keyed_server, dsn, name, notes))


async def _erase_generated(server: ServerProcess, dsn: str, name: str, notes: str) -> None:
    async with aiohttp.ClientSession() as session:
        admin = Api(session, server.url, ADMIN_TOKEN)
        rid = str((await open_relationship(admin, mentee_name=name))["id"])
        data = {"author_role": "mentee", "kind": "initial", "notes": notes, "values": name}
        event = await post(admin, rid, "reflection.recorded", data, MENTEE)
        assert event["data"]["notes"] == notes
        status, _, _ = await admin.get(f"/v1/relationships?min_position={event['position']}")
        before = await scan_schema(dsn, server.schema)
        # the scan does see clear text (the list's read model keeps the name)...
        assert found_in(before, name) == [("relationship_summaries", "mentee_name")]
        assert not found_in(before, notes)  # ...and the events keep it sealed
        status, erased, _ = await admin.post(f"/v1/relationships/{rid}/erasure", {"reason": "r"})
        assert status == 201, erased
        status, _, _ = await admin.get(f"/v1/relationships?min_position={erased['position']}")
        assert status == 200
    values = await scan_schema(dsn, server.schema)
    assert not found_in(values, name) and not found_in(values, notes)


async def test_evidence_bundles_decode_sealed_fields_until_the_erasure(admin: Api) -> None:
    writer = admin.as_token(await admin.token_for("writer"))
    name = f"name-{uuid.uuid4().hex}"
    rid = str((await open_relationship(writer, mentee_name=name))["id"])
    status, bundle, _ = await admin.get(f"/v1/relationships/{rid}/evidence")
    assert status == 200, bundle
    assert bundle["events"][0]["event"]["data"]["mentee_name"] == name
    status, _, _ = await admin.post(f"/v1/relationships/{rid}/erasure", {"reason": "r"})
    assert status == 201
    status, bundle, _ = await admin.get(f"/v1/relationships/{rid}/evidence")
    assert status == 200, bundle
    assert bundle["events"][0]["event"]["data"]["mentee_name"] == ERASED
    assert name not in json.dumps(bundle, ensure_ascii=False)

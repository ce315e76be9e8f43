"""Checkpoints and evidence bundles through the real server: roles, program
scope, hostile parameters, the `checkpoint.published` webhook, and the
`mentorflow evidence` commands (export against the server's database, verify
offline) with their exit codes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
import pytest
import standardwebhooks
from aiohttp import web

from domain.verifiable.evidence import verify_bundle
from domain.verifiable.note import parse_checkpoint, verify
from tests.e2e.conftest import Api
from tests.e2e.journey import MENTEE, TO_CULTIVATION, open_relationship, walk
from tests.support.database import drop_schema_sync, new_schema_name
from tests.support.receiver import serving
from tests.support.server import ADMIN_TOKEN, ServerProcess, free_port, running_server
from tests.support.waiting import wait_until

pytestmark = pytest.mark.db

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(tempfile.mkdtemp(prefix="mentorflow-evidence-e2e-"))


@pytest.fixture(scope="module")
def server(dsn: str) -> Iterator[ServerProcess]:
    with running_server(
        dsn,
        MENTORFLOW_DATA_DIR=str(DATA_DIR),
        MENTORFLOW_CHECKPOINT_INTERVAL="1",
        MENTORFLOW_WEBHOOK_ALLOW_PRIVATE="1",
        MENTORFLOW_WEBHOOK_RETRY_SCHEDULE="1,1",
    ) as process:
        yield process


@pytest.fixture
async def admin(server: ServerProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, server.url, ADMIN_TOKEN)


async def _relationship(admin: Api, program: str = "p1") -> str:
    writer = admin.as_token(await admin.token_for("writer"))
    rid = str((await open_relationship(writer, program_id=program, actor=MENTEE))["id"])
    await walk(writer, rid, TO_CULTIVATION)
    return rid


async def _public_key(admin: Api) -> bytes:
    status, body, _ = await admin.as_token(None).get("/v1/checkpoints/public-key")
    assert status == 200, body
    return base64.b64decode(body["public_key"])


async def test_checkpoints_are_published_and_signed(admin: Api) -> None:
    anonymous = admin.as_token(None)
    status, key, _ = await anonymous.get("/v1/checkpoints/public-key")
    assert status == 200
    assert key["pem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert key["key_name"].startswith("mentorflow.local/")
    assert (await anonymous.get("/v1/checkpoints/latest"))[0] == 401

    await _relationship(admin)
    status, published, headers = await admin.post("/v1/checkpoints")
    assert status == 201, published
    assert headers["Location"] == f"/v1/checkpoints/{published['tree_size']}"
    raw_key = base64.b64decode(key["public_key"])
    text = verify(published["note"], published["key_name"], raw_key)
    signed = parse_checkpoint(text)
    assert signed.tree_size == published["tree_size"]
    assert base64.b64encode(signed.root_hash).decode() == published["root_hash"]
    assert published["origin"] == key["key_name"] == published["key_name"]

    # the log has not grown: the latest one again
    status, again, _ = await admin.post("/v1/checkpoints")
    assert status == 201 and again == published
    # an Idempotency-Key replays the first answer, even once the log has grown
    keyed = {"Idempotency-Key": "publish-once"}
    status, first, _ = await admin.post("/v1/checkpoints", headers=keyed)
    await _relationship(admin)
    status, replayed, headers = await admin.post("/v1/checkpoints", headers=keyed)
    assert status == 201 and replayed == first and headers["Idempotent-Replayed"] == "true"

    reader = admin.as_token(await admin.token_for("writer"))
    for path in ("/v1/checkpoints/latest", f"/v1/checkpoints/{published['tree_size']}"):
        status, body, _ = await reader.get(path)
        assert status == 200 and body == published, (path, body)
    limited = admin.as_token(await admin.token_for("auditor", programs=["p9"]))
    assert (await limited.get("/v1/checkpoints/latest"))[0] == 200
    for role in ("writer", "auditor"):
        other = admin.as_token(await admin.token_for(role))
        status, problem, _ = await other.post("/v1/checkpoints")
        assert status == 403 and problem["type"].endswith("forbidden")


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/checkpoints/abc", 422),
        ("/v1/checkpoints/-1", 422),
        ("/v1/checkpoints/1.5", 422),
        ("/v1/checkpoints/99999999999999999999999", 422),
        ("/v1/checkpoints/%E2%80%94", 422),
        ("/v1/checkpoints/%00", 422),
        ("/v1/checkpoints/123456789", 404),
        ("/v1/checkpoints/latest?x=1", 422),
    ],
)
async def test_bad_tree_sizes_are_clear_problems(admin: Api, path: str, status: int) -> None:
    got, problem, headers = await admin.get(path)
    assert got == status, problem
    assert headers["Content-Type"].startswith("application/problem+json")


async def test_an_evidence_bundle_per_role(admin: Api) -> None:
    rid = await _relationship(admin)
    key = await _public_key(admin)
    auditor = admin.as_token(await admin.token_for("auditor"))
    status, bundle, _ = await auditor.get(f"/v1/relationships/{rid}/evidence")
    assert status == 200, bundle
    assert bundle["relationship_id"] == rid
    first = bundle["events"][1]["event"]
    assert first["type"] == "reflection.recorded"
    assert first["data"]["notes"] != "private thoughts about my career"  # redacted
    verdict = verify_bundle(bundle, key)
    assert verdict.valid, verdict.failures

    status, full, _ = await admin.get(f"/v1/relationships/{rid}/evidence")
    assert status == 200
    assert full["events"][1]["event"]["data"]["notes"] == "private thoughts about my career"
    assert verify_bundle(full, key).valid
    # the same bytes and proofs whoever asks; only the readable view differs
    assert [e["canonical"] for e in full["events"]] == [e["canonical"] for e in bundle["events"]]

    size = bundle["checkpoint"]["tree_size"]
    status, pinned, _ = await auditor.get(f"/v1/relationships/{rid}/evidence?tree_size={size}")
    assert status == 200 and pinned["checkpoint"]["tree_size"] == size

    writer = admin.as_token(await admin.token_for("writer"))
    status, problem, _ = await writer.get(f"/v1/relationships/{rid}/evidence")
    assert status == 403, problem
    elsewhere = admin.as_token(await admin.token_for("auditor", programs=["p2"]))
    assert (await elsewhere.get(f"/v1/relationships/{rid}/evidence"))[0] == 404
    here = admin.as_token(await admin.token_for("auditor", programs=["p1"]))
    assert (await here.get(f"/v1/relationships/{rid}/evidence"))[0] == 200


async def test_hostile_evidence_queries(admin: Api) -> None:
    rid = await _relationship(admin)
    base = f"/v1/relationships/{rid}/evidence"
    cases = {
        "?tree_size=abc": 422,
        "?tree_size=-3": 422,
        "?tree_size=1": 422,  # no checkpoint of that size: 404; or too small: 422
        "?tree_size=99999999999999999999": 422,
        "?tree_size=123456789": 404,
        "?since=0": 422,
        "?since=999999999": 422,
        "?surprise=1": 422,
    }
    for query, expected in cases.items():
        status, problem, _ = await admin.get(base + query)
        if query == "?tree_size=1":
            assert status in (404, 422), problem
        else:
            assert status == expected, (query, problem)
        assert "type" in problem and status < 500
    status, problem, _ = await admin.get("/v1/relationships/not-a-uuid/evidence")
    assert status == 404
    status, problem, _ = await admin.get(
        "/v1/relationships/00000000-0000-0000-0000-000000000000/evidence"
    )
    assert status == 404 and problem["type"].endswith("not-found")


async def test_a_payload_altered_in_the_database_is_evidence_not_an_error(
    admin: Api, server: ServerProcess
) -> None:
    rid = await _relationship(admin)
    key = await _public_key(admin)
    conn = await asyncpg.connect(server.dsn, server_settings={"search_path": server.schema})
    try:
        await conn.execute(
            "UPDATE events SET payload = '\\x00ff'::bytea, metadata = '[1]'::jsonb"
            " WHERE stream_id = $1 AND version = 3",
            UUID(rid),
        )
    finally:
        await conn.close()
    for role in ("auditor", "admin"):
        token = ADMIN_TOKEN if role == "admin" else await admin.token_for("auditor")
        status, bundle, _ = await admin.as_token(token).get(f"/v1/relationships/{rid}/evidence")
        assert status == 200, bundle
        event = bundle["events"][2]["event"]
        assert event["version"] == 3 and event["data"] is None and event["decode_error"]
        verdict = verify_bundle(bundle, key)
        assert not verdict.valid
        assert any(f.startswith("version 3:") for f in verdict.failures), verdict.failures
    status, check, _ = await admin.get(f"/v1/relationships/{rid}/audit/verify")
    assert status == 200 and check["valid"] is False


async def test_audit_verify_reports_inclusion_in_the_latest_checkpoint(admin: Api) -> None:
    rid = await _relationship(admin)
    status, _, _ = await admin.post("/v1/checkpoints")
    assert status == 201
    status, check, _ = await admin.get(f"/v1/relationships/{rid}/audit/verify")
    assert status == 200
    assert check["valid"] is True and check["checked"] == len(TO_CULTIVATION) + 1
    checkpoint = check["checkpoint"]
    assert checkpoint["included"] is True and checkpoint["signature_valid"] is True
    assert checkpoint["events_covered"] == check["checked"]


async def test_checkpoints_reach_webhook_subscribers(admin: Api) -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    async with serving(handle) as url:
        status, hook, _ = await admin.post(
            "/v1/webhooks", {"url": url, "event_types": ["checkpoint.published"]}
        )
        assert status == 201, hook
        await _relationship(admin)
        status, published, _ = await admin.post("/v1/checkpoints")
        assert status == 201
        await wait_until(
            lambda: any(
                json.loads(body)["data"]["tree_size"] == published["tree_size"]
                for _, body in received
            ),
            what="no checkpoint delivered",
        )
    for headers, body in received:
        standardwebhooks.Webhook(hook["secret"]).verify(body, headers)
        event = json.loads(body)
        assert event["type"] == "org.mentorflow.checkpoint.published"
        assert event["source"] == "/checkpoints"
        assert set(event["data"]) == {"origin", "tree_size", "root_hash", "note"}
    last = json.loads(received[-1][1])["data"]
    assert last == {k: published[k] for k in ("origin", "tree_size", "root_hash", "note")}


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


async def test_the_evidence_commands(admin: Api, server: ServerProcess, tmp_path: Path) -> None:
    rid = await _relationship(admin)
    key = await _public_key(admin)
    status, kept, _ = await admin.post("/v1/checkpoints")
    assert status == 201
    kept_file = tmp_path / "kept.json"
    kept_file.write_text(json.dumps(kept))
    await _relationship(admin)  # the log grows after the checkpoint was kept
    assert (await admin.post("/v1/checkpoints"))[0] == 201
    env = {
        "DATABASE_URL": server.dsn,
        "MENTORFLOW_DB_SCHEMA": server.schema,
        "MENTORFLOW_DATA_DIR": str(DATA_DIR),
    }
    bundle_file = tmp_path / "bundle.json"
    done = await asyncio.to_thread(
        _cli, "evidence", "export", rid, "--out", str(bundle_file),
        "--since-checkpoint", str(kept_file), env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    bundle = json.loads(bundle_file.read_text())
    assert bundle["checkpoint"]["tree_size"] > kept["tree_size"]
    assert bundle["consistency"]["first"] == kept["tree_size"]
    assert bundle["events"][1]["event"]["data"]["notes"] == "private thoughts about my career"

    offline = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}  # never used
    b64_key = base64.b64encode(key).decode()
    pem_file = tmp_path / "key.pem"
    status, public, _ = await admin.as_token(None).get("/v1/checkpoints/public-key")
    pem_file.write_text(public["pem"])

    def verify_cli(*extra: str) -> subprocess.CompletedProcess[str]:
        return _cli("evidence", "verify", *extra, env=offline)

    ok = await asyncio.to_thread(
        verify_cli, str(bundle_file), "--public-key", b64_key,
        "--trusted-checkpoint", str(kept_file),
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("VALID") and "not pinned" not in ok.stdout
    with_pem = await asyncio.to_thread(verify_cli, str(bundle_file), "--public-key", str(pem_file))
    assert with_pem.returncode == 0, with_pem.stdout
    unpinned = await asyncio.to_thread(verify_cli, str(bundle_file))
    assert unpinned.returncode == 0 and "not pinned" in unpinned.stdout

    tampered = json.loads(bundle_file.read_text())
    tampered["events"][2]["event"]["type"] = "relationship.withdrawn"
    tampered_file = tmp_path / "tampered.json"
    tampered_file.write_text(json.dumps(tampered))
    bad = await asyncio.to_thread(verify_cli, str(tampered_file), "--public-key", b64_key)
    assert bad.returncode == 1
    assert "INVALID" in bad.stdout and "version 3" in bad.stdout and "type" in bad.stdout

    other_key = base64.b64encode(bytes(range(32))).decode()
    wrong = await asyncio.to_thread(verify_cli, str(bundle_file), "--public-key", other_key)
    assert wrong.returncode == 1 and "signature" in wrong.stdout

    as_json = await asyncio.to_thread(
        verify_cli, str(bundle_file), "--public-key", b64_key, "--format", "json"
    )
    report: dict[str, Any] = json.loads(as_json.stdout)
    assert report["valid"] and report["key_pinned"] and report["events_checked"] > 5

    not_json = tmp_path / "not.json"
    not_json.write_text("{nope")
    assert (await asyncio.to_thread(verify_cli, str(not_json))).returncode == 1
    for usage in (
        (str(tmp_path / "missing.json"),),
        (str(bundle_file), "--public-key", "not-a-key"),
        (str(bundle_file), "--public-key", base64.b64encode(b"short").decode()),
        (str(bundle_file), "--trusted-checkpoint", str(not_json)),
        (),
    ):
        done = await asyncio.to_thread(verify_cli, *usage)
        assert done.returncode == 2, (usage, done.stdout, done.stderr)

    # export: an unknown relationship, a malformed id
    unknown = await asyncio.to_thread(
        _cli, "evidence", "export", "00000000-0000-0000-0000-000000000000", env=env
    )
    assert unknown.returncode == 1 and "no relationship" in unknown.stderr
    malformed = await asyncio.to_thread(_cli, "evidence", "export", "nope", env=env)
    assert malformed.returncode == 2


@pytest.mark.parametrize("run_workers", ["1", "0"])
def test_serve_refuses_to_start_without_its_signing_key(
    dsn: str, tmp_path: Path, run_workers: str
) -> None:
    schema = new_schema_name("e2e")
    try:
        done = _cli(
            "serve", "--port", str(free_port()),
            env={
                "DATABASE_URL": dsn,
                "MENTORFLOW_DB_SCHEMA": schema,
                "MENTORFLOW_SIGNING_KEY": str(tmp_path / "absent.pem"),
                "MENTORFLOW_RUN_WORKERS": run_workers,
            },
        )  # fmt: skip
    finally:
        drop_schema_sync(dsn, schema)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "absent.pem" in done.stderr and "Traceback" not in done.stderr

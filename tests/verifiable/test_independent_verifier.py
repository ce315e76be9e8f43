"""Bundles fetched from a real running server pass a verifier written from
the documentation alone (tests/verifiable/independent_verifier.py), and
tampered ones do not."""

from __future__ import annotations

import ast
import base64
import copy
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import Api
from tests.e2e.journey import MENTEE, TO_CONCLUDED, TO_CULTIVATION, open_relationship, walk
from tests.support.server import ADMIN_TOKEN, ServerProcess, running_server
from tests.verifiable import independent_verifier as verifier

pytestmark = pytest.mark.db


def test_the_verifier_shares_no_code_with_the_service() -> None:
    tree = ast.parse(Path(verifier.__file__).read_text())
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    roots = {name.split(".")[0] for name in imported}
    assert roots <= {"__future__", "base64", "hashlib", "json", "datetime", "typing",
                     "cryptography"}, roots  # fmt: skip


@pytest.fixture(scope="module")
def server(dsn: str) -> Iterator[ServerProcess]:
    data = tempfile.mkdtemp(prefix="mentorflow-independent-")
    with running_server(dsn, MENTORFLOW_DATA_DIR=data) as process:
        yield process


@pytest.fixture
async def admin(server: ServerProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, server.url, ADMIN_TOKEN)


async def _fetch(admin: Api) -> tuple[dict[str, Any], bytes, dict[str, Any]]:
    writer = admin.as_token(await admin.token_for("writer"))
    auditor = admin.as_token(await admin.token_for("auditor"))
    rid = str((await open_relationship(writer, actor=MENTEE))["id"])
    await walk(writer, rid, TO_CULTIVATION)
    status, kept, _ = await admin.post("/v1/checkpoints")
    assert status == 201
    await walk(writer, rid, TO_CONCLUDED)
    other = str((await open_relationship(writer, actor=MENTEE))["id"])
    await walk(writer, other, TO_CULTIVATION[:3])
    status, key, _ = await admin.as_token(None).get("/v1/checkpoints/public-key")
    assert status == 200
    status, bundle, _ = await auditor.get(
        f"/v1/relationships/{rid}/evidence?since={kept['tree_size']}"
    )
    assert status == 200, bundle
    return bundle, base64.b64decode(key["public_key"]), kept


async def test_bundles_from_the_server_verify_independently(admin: Api) -> None:
    bundle, key, kept = await _fetch(admin)
    assert len(bundle["events"]) == len(TO_CULTIVATION) + len(TO_CONCLUDED) + 1
    assert bundle["checkpoint"]["tree_size"] > kept["tree_size"]
    assert verifier.problems(bundle, key) == []
    assert verifier.problems(bundle, key, trusted=kept) == []


def _tamper(bundle: dict[str, Any], how: str) -> dict[str, Any]:
    forged = copy.deepcopy(bundle)
    events = forged["events"]
    if how == "payload":
        raw = base64.b64decode(events[3]["canonical"])
        events[3]["canonical"] = base64.b64encode(raw[:-1] + bytes([raw[-1] ^ 1])).decode()
    elif how == "chain":
        events[4]["chain_hash"] = base64.b64encode(b"\x00" * 32).decode()
    elif how == "drop":
        del events[2]
    elif how == "type":
        events[5]["event"]["type"] = "relationship.withdrawn"
    elif how == "path":
        events[0]["audit_path"] = events[0]["audit_path"][::-1]
    elif how == "root":
        forged["checkpoint"]["root_hash"] = base64.b64encode(b"\x02" * 32).decode()
    elif how == "note":
        forged["checkpoint"]["note"] = forged["checkpoint"]["note"].replace("\n", "\n9", 1)
    elif how == "consistency":
        forged["consistency"]["proof"] = forged["consistency"]["proof"][1:]
    return forged


@pytest.mark.parametrize(
    "how", ["payload", "chain", "drop", "type", "path", "root", "note", "consistency"]
)
async def test_a_tampered_bundle_is_detected(admin: Api, how: str) -> None:
    bundle, key, kept = await _fetch(admin)
    assert verifier.problems(_tamper(bundle, how), key, trusted=kept) != []


async def test_another_key_is_refused(admin: Api) -> None:
    bundle, key, _ = await _fetch(admin)
    other = bytes(31) + bytes([key[-1] ^ 1])
    assert other != key and verifier.problems(bundle, other) != []

"""The `mentorflow` command line, run as a real process against a real database."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from domain import make_mapper
from domain.samples import walk_to
from service.relationships.repository import RelationshipRepository
from service.store.eventstore import EventStore
from tests.support.database import drop_schema_sync, new_schema_name

pytestmark = pytest.mark.db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cli_env(dsn: str) -> Iterator[dict[str, str]]:
    schema = new_schema_name("cli")
    yield {**os.environ, "DATABASE_URL": dsn, "MENTORFLOW_DB_SCHEMA": schema}
    drop_schema_sync(dsn, schema)


def mentorflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_then_audit_commands(cli_env: dict[str, str]) -> None:
    demo = mentorflow(cli_env, "demo")
    assert demo.returncode == 0, demo.stderr
    ids = re.findall(r"^([0-9a-f-]{36})\s", demo.stdout, re.MULTILINE)
    assert len(ids) >= 6

    assert mentorflow(cli_env, "verify", "--all").returncode == 0
    replay = mentorflow(cli_env, "replay", ids[0], "--format", "text")
    assert replay.returncode == 0 and ids[0] in replay.stdout
    assert mentorflow(cli_env, "replay", ids[0], "--version", "1").returncode == 0
    assert mentorflow(cli_env, "replay", ids[0], "--as-of", "yesterday").returncode == 2

    rebuild = mentorflow(cli_env, "projections", "rebuild", "timeline")
    assert rebuild.returncode == 0, rebuild.stderr
    assert mentorflow(cli_env, "projections", "rebuild", "nonsense").returncode == 2


async def test_verify_exits_1_and_names_the_altered_event(
    cli_env: dict[str, str], dsn: str
) -> None:
    demo = mentorflow(cli_env, "demo")
    relationship_id = re.findall(r"^([0-9a-f-]{36})\s", demo.stdout, re.MULTILINE)[-1]
    conn = await asyncpg.connect(
        dsn, server_settings={"search_path": cli_env["MENTORFLOW_DB_SCHEMA"]}
    )
    try:
        await conn.execute(
            "UPDATE events SET payload = set_byte(payload, 3, get_byte(payload, 3) # 1)"
            " WHERE stream_id = $1 AND version = 2",
            relationship_id,
        )
    finally:
        await conn.close()
    broken = mentorflow(cli_env, "verify", relationship_id)
    assert broken.returncode == 1
    assert f"relationship {relationship_id}: BROKEN at version 2" in broken.stdout
    assert mentorflow(cli_env, "verify", "--all").returncode == 1


def test_tokens_and_diagram(cli_env: dict[str, str]) -> None:
    token = mentorflow(cli_env, "tokens", "create", "--role", "auditor", "--name", "cli-check")
    assert token.returncode == 0 and token.stdout.strip().startswith("mf_")
    again = mentorflow(cli_env, "tokens", "create", "--role", "auditor", "--name", "cli-check")
    assert again.returncode == 2 and "already exists" in again.stderr
    reserved = mentorflow(
        cli_env, "tokens", "create", "--role", "admin", "--name", "bootstrap-admin"
    )
    assert reserved.returncode == 2 and "reserved" in reserved.stderr
    diagram = mentorflow(cli_env, "diagram")
    assert diagram.returncode == 0 and "stateDiagram" in diagram.stdout


def test_tokens_create_list_revoke(cli_env: dict[str, str]) -> None:
    created = mentorflow(
        cli_env, "tokens", "create", "--role", "writer", "--name", "cli-limited",
        "--program", "p-1", "--program", "p-2",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    listed = mentorflow(cli_env, "tokens", "list")
    assert listed.returncode == 0, listed.stderr
    assert token not in listed.stdout
    rows = {row["name"]: row for row in map(json.loads, listed.stdout.splitlines())}
    mine = rows["cli-limited"]
    assert mine["program_ids"] == ["p-1", "p-2"] and mine["revoked_at"] is None

    assert mentorflow(cli_env, "tokens", "revoke", mine["id"]).returncode == 0
    listed = mentorflow(cli_env, "tokens", "list")
    rows = {row["name"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert rows["cli-limited"]["revoked_at"] is not None
    assert mentorflow(cli_env, "tokens", "revoke", str(uuid.uuid4())).returncode == 1
    assert mentorflow(cli_env, "tokens", "revoke", "nonsense").returncode == 2
    admin = mentorflow(
        cli_env, "tokens", "create", "--role", "admin", "--name", "cli-x", "--program", "p"
    )
    assert admin.returncode == 2 and "program_ids" in admin.stderr
    bad = mentorflow(cli_env, "tokens", "create", "--role", "writer", "--name", "Bad Name")
    assert bad.returncode == 2 and "name" in bad.stderr


def test_replay_beyond_the_head_fails_like_the_api(cli_env: dict[str, str]) -> None:
    demo = mentorflow(cli_env, "demo")
    rid = re.findall(r"^([0-9a-f-]{36})\s", demo.stdout, re.MULTILINE)[0]
    beyond = mentorflow(cli_env, "replay", rid, "--version", "100000")
    assert beyond.returncode == 1
    assert "has no version 100000" in beyond.stderr
    out_of_range = mentorflow(cli_env, "replay", rid, "--as-of", "0001-01-01T00:00:00+01:00")
    assert out_of_range.returncode == 2 and "years 1 and 9999" in out_of_range.stderr


@pytest.mark.parametrize(
    "command",
    [
        ("verify", "--all"),
        ("replay", "00000000-0000-0000-0000-000000000001"),
        ("projections", "rebuild"),
        ("tokens", "list"),
    ],
)
def test_reading_commands_never_create_a_database(tmp_path: Path, command: tuple[str, ...]) -> None:
    """Run from a directory with no data: it says where it looked and fails,
    instead of starting an empty embedded database and answering "valid"."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["MENTORFLOW_DATA_DIR"] = str(tmp_path / "nothing-here")
    result = mentorflow(env, *command)
    assert result.returncode == 3, (result.returncode, result.stderr)
    assert str(tmp_path / "nothing-here") in result.stderr
    assert not (tmp_path / "nothing-here").exists()


def test_reading_commands_refuse_a_database_without_the_schema(dsn: str) -> None:
    env = {**os.environ, "DATABASE_URL": dsn, "MENTORFLOW_DB_SCHEMA": new_schema_name("absent")}
    result = mentorflow(env, "verify", "--all")
    assert result.returncode == 3 and "no Mentorflow schema" in result.stderr


def test_a_bad_cipher_key_is_one_line_before_any_database(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env |= {"MENTORFLOW_DATA_DIR": str(tmp_path / "data"), "MENTORFLOW_CIPHER_KEY": "not base64!"}
    result = mentorflow(env, "serve", "--port", "0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "mentorflow: MENTORFLOW_CIPHER_KEY must be base64"
    ]
    assert not (tmp_path / "data").exists()


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env["MENTORFLOW_DATA_DIR"] = str(tmp_path / "data")
        result = mentorflow(env, "serve", "--port", str(port))
    assert result.returncode == 4
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"mentorflow: cannot listen on 127.0.0.1:{port}")
    assert not (tmp_path / "data").exists()


async def test_demo_loads_once_and_refuses_a_database_with_other_data(dsn: str) -> None:
    schema = new_schema_name("demo")
    env = {**os.environ, "DATABASE_URL": dsn, "MENTORFLOW_DB_SCHEMA": schema}
    try:
        first = await asyncio.to_thread(mentorflow, env, "demo")
        assert first.returncode == 0 and "loaded 11 relationships" in first.stdout, first.stderr
        again = await asyncio.to_thread(mentorflow, env, "demo")
        assert again.returncode == 0 and "already loaded (11 relationships)" in again.stdout
        assert sorted(again.stdout.splitlines()[:-1]) == sorted(first.stdout.splitlines()[:-1])
    finally:
        await asyncio.to_thread(drop_schema_sync, dsn, schema)

    other = new_schema_name("other")
    env = {**env, "MENTORFLOW_DB_SCHEMA": other}
    store = await EventStore.open(dsn, other)
    try:
        await RelationshipRepository(store, make_mapper()).save(walk_to("cultivation"))
        refused = await asyncio.to_thread(mentorflow, env, "demo")
        assert refused.returncode == 1 and "--force" in refused.stderr
        assert await store.max_position() == walk_to("cultivation").version
        forced = await asyncio.to_thread(mentorflow, env, "demo", "--force")
        assert forced.returncode == 0 and "loaded 11 relationships" in forced.stdout
    finally:
        await store.close()
        await asyncio.to_thread(drop_schema_sync, dsn, other)

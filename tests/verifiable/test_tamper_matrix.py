"""Rewrites of history by someone who can write to the database, played with raw
SQL: each is detected by `mentorflow verify --all --trusted-checkpoint` with a
signed checkpoint kept outside the database, which names the first position
that differs; the database-only `verify --all` sees some of them and not
others (asserted as it behaves; docs/verification.md has the table)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain import make_mapper
from domain.samples import walk_to
from domain.verifiable import note
from service import auditor
from service.platform.settings import Settings
from service.relationships.repository import RelationshipRepository
from service.store.eventstore import EventStore
from service.verifiable.tree import MerkleTree
from service.verifiable.tree_builder import catch_up
from tests.projections.support import runner_for

pytestmark = pytest.mark.db

ORIGIN = "test.mentorflow.example/log"
KEY_NAME = "test-log-key"
KEY = Ed25519PrivateKey.generate()
PUBLIC = base64.b64encode(note.raw_public_key(KEY.public_key())).decode()

_RECHAIN = """
UPDATE events e SET chain_hash = c.h FROM (
    SELECT position, mf_chain('\\x'::bytea, mf_canonical(position, stream_id, version, event_id,
               topic, payload, metadata, recorded_at))
               OVER (PARTITION BY stream_id ORDER BY version ROWS UNBOUNDED PRECEDING) AS h
      FROM events WHERE stream_id = $1) c
 WHERE e.position = c.position
"""


@dataclass
class Log:
    store: EventStore
    victim: UUID
    bystander: UUID
    size: int
    """The checkpoint's tree size: every event at the time."""

    async def sql(self, sql: str, *args: object) -> None:
        await self.store.with_connection(lambda conn: conn.execute(sql, *args))

    async def position_of(self, version: int) -> int:
        value: int = await self.store.with_connection(
            lambda conn: conn.fetchval(
                "SELECT position FROM events WHERE stream_id = $1 AND version = $2",
                self.victim,
                version,
            )
        )
        return value


Tamper = Callable[[Log], Awaitable[int]]
"""Rewrites history; returns the first position that now differs."""


async def flip_a_payload_byte(log: Log) -> int:
    await log.sql(
        "UPDATE events SET payload = set_byte(payload, 20, get_byte(payload, 20) # 1)"
        " WHERE stream_id = $1 AND version = 5",
        log.victim,
    )
    return await log.position_of(5)


async def edit_and_rechain(log: Log) -> int:
    await log.sql(
        "UPDATE events SET payload = set_byte(payload, 12, get_byte(payload, 12) # 4)"
        " WHERE stream_id = $1 AND version = 6",
        log.victim,
    )
    await log.sql(_RECHAIN, log.victim)
    return await log.position_of(6)


async def forge_an_envelope_and_rechain(log: Log) -> int:
    await log.sql(
        "UPDATE events SET metadata = jsonb_set(metadata, '{actor,id}', '\"someone-else\"')"
        " WHERE stream_id = $1 AND version = 7",
        log.victim,
    )
    await log.sql(_RECHAIN, log.victim)
    return await log.position_of(7)


async def swap_and_rechain(log: Log) -> int:
    first = await log.position_of(3)
    for old, new in ((3, -3), (4, 3), (-3, 4)):
        await log.sql(
            "UPDATE events SET version = $3 WHERE stream_id = $1 AND version = $2",
            log.victim,
            old,
            new,
        )
    await log.sql(_RECHAIN, log.victim)
    return first


async def delete_a_streams_last_event(log: Log) -> int:
    position = await log.position_of(14)
    await log.sql("DELETE FROM events WHERE position = $1", position)
    await log.sql("DELETE FROM timeline_entries WHERE position = $1", position)
    await log.sql(
        "UPDATE relationship_summaries SET version = 13 WHERE relationship_id = $1", log.victim
    )
    return position


async def truncate_the_log(log: Log) -> int:
    """The log's last three events go, and the position counter is moved back."""
    cut = log.size - 2
    await log.sql("DELETE FROM timeline_entries WHERE position >= $1", cut)
    await log.sql("DELETE FROM events WHERE position >= $1", cut)
    await log.sql("UPDATE event_position SET last_position = $1", cut - 1)
    return cut


async def truncate_the_log_and_the_tree(log: Log) -> int:
    cut = await truncate_the_log(log)
    await log.sql("DELETE FROM merkle_nodes")
    await log.sql("UPDATE merkle_tree SET size = 0")
    await catch_up(log.store)
    return cut


async def edit_rechain_and_rebuild_the_tree(log: Log) -> int:
    position = await edit_and_rechain(log)
    await log.sql("DELETE FROM merkle_nodes")
    await log.sql("UPDATE merkle_tree SET size = 0")
    assert await catch_up(log.store) == log.size
    return position


@dataclass(frozen=True)
class Row:
    tamper: Tamper
    db_only_sees_it: bool
    exact: bool = True
    """The trusted check names the exact position (else a range holding it)."""


MATRIX = {
    "flip a payload byte": Row(flip_a_payload_byte, True),
    "edit a payload, recompute the chain": Row(edit_and_rechain, True),
    "forge an envelope, recompute the chain": Row(forge_an_envelope_and_rechain, True),
    "swap two events, recompute the chain": Row(swap_and_rechain, True),
    "delete a stream's last event and its read-model rows": Row(delete_a_streams_last_event, True),
    "delete the log's last events, rewind the counter": Row(truncate_the_log, True),
    "... and rewind and rebuild the stored tree": Row(truncate_the_log_and_the_tree, False),
    "edit, recompute the chain, rebuild the stored tree": Row(
        edit_rechain_and_rebuild_the_tree, False, exact=False
    ),
}


@pytest.fixture
async def log(store: EventStore, dsn: str) -> AsyncIterator[Log]:
    repository = RelationshipRepository(store, make_mapper())
    victim, bystander = walk_to("concluded"), walk_to("cultivation", mentee_id="mentee-2")
    await repository.save(victim)
    await repository.save(bystander)
    runner = runner_for(store, dsn, repository)
    await runner.start()
    try:
        assert await runner.wait_until_projected(None, await store.max_position(), 10)
    finally:
        await runner.stop()
    size = await catch_up(store)
    yield Log(store, victim.id, bystander.id, size)


def _checkpoint(tree_size: int, root: bytes, key: Ed25519PrivateKey = KEY) -> str:
    return note.sign(note.checkpoint_text(ORIGIN, tree_size, root), KEY_NAME, key)


async def _keep_checkpoint(log: Log, directory: Path) -> Path:
    """The checkpoint an auditor saved, as GET /v1/checkpoints/... answers it."""
    root = await MerkleTree(log.store).root(log.size)
    body = {
        "origin": ORIGIN,
        "tree_size": log.size,
        "root_hash": base64.b64encode(root).decode(),
        "timestamp": "2026-11-29T00:00:00Z",
        "key_name": KEY_NAME,
        "public_key": PUBLIC,
        "note": _checkpoint(log.size, root),
    }
    path = directory / "checkpoint.json"
    path.write_text(json.dumps(body))
    return path


async def _verify(
    settings: Settings, trusted_checkpoint: str | None = None, public_key: str | None = None
) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await auditor.verify(
        settings,
        all=True,
        out=out,
        err=err,
        trusted_checkpoint=trusted_checkpoint,
        public_key=public_key,
    )
    return code, out.getvalue() + err.getvalue()


@pytest.mark.parametrize("row", list(MATRIX.values()), ids=list(MATRIX))
async def test_the_tamper_matrix(row: Row, log: Log, dsn: str, schema: str, tmp_path: Path) -> None:
    settings = Settings(database_url=dsn, db_schema=schema)
    kept = await _keep_checkpoint(log, tmp_path)
    code, text = await _verify(settings, trusted_checkpoint=str(kept), public_key=PUBLIC)
    assert code == 0, text  # untouched: valid against the checkpoint
    assert "public key: pinned" in text

    first = await row.tamper(log)

    code, text = await _verify(settings, trusted_checkpoint=str(kept), public_key=PUBLIC)
    assert code == 1, text
    assert "trusted checkpoint: MISMATCH" in text
    if row.exact:
        assert f"first differing position {first}" in text, text
    else:
        assert f"is in 1..{log.size}" in text, text

    code, text = await _verify(settings)
    assert code == (1 if row.db_only_sees_it else 0), text


async def test_signed_checkpoints_in_the_database_narrow_a_rebuilt_tree(
    log: Log, dsn: str, schema: str, tmp_path: Path
) -> None:
    tree = MerkleTree(log.store)
    forger = Ed25519PrivateKey.generate()
    raw_public = note.raw_public_key(KEY.public_key())
    for size in range(2, log.size, 4):
        root = await tree.root(size)
        await log.sql(
            "INSERT INTO checkpoints (tree_size, root_hash, note, key_name, public_key)"
            " VALUES ($1, $2, $3, $4, $5)",
            size,
            root,
            _checkpoint(size, root),
            KEY_NAME,
            raw_public,
        )
    kept = await _keep_checkpoint(log, tmp_path)
    position = await edit_rechain_and_rebuild_the_tree(log)
    sizes = range(2, log.size, 4)
    # a checkpoint the insider signed with a key of their own over the rebuilt
    # tree is not believed (it would move the range past the edit)
    forged_size = min(s for s in sizes if s >= position)
    await log.sql(
        "UPDATE checkpoints SET note = $2 WHERE tree_size = $1",
        forged_size,
        _checkpoint(forged_size, await tree.root(forged_size), forger),
    )
    settings = Settings(database_url=dsn, db_schema=schema)
    code, text = await _verify(settings, trusted_checkpoint=str(kept), public_key=PUBLIC)
    assert code == 1
    low = max(s for s in sizes if s < position)
    high = min(s for s in sizes if s > forged_size)
    assert f"is in {low + 1}..{high}" in text, (position, text)


async def test_how_the_checkpoints_key_is_told(
    log: Log, dsn: str, schema: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=dsn, db_schema=schema)
    kept = await _keep_checkpoint(log, tmp_path)
    code, text = await _verify(settings, trusted_checkpoint=str(kept))
    assert code == 0 and "not pinned" in text, text

    bare = tmp_path / "checkpoint.note"
    bare.write_text(json.loads(kept.read_text())["note"])
    code, text = await _verify(settings, trusted_checkpoint=str(bare))
    assert code == 0 and "signature was not checked" in text, text
    code, text = await _verify(settings, trusted_checkpoint=str(bare), public_key=PUBLIC)
    assert code == 0 and "public key: pinned" in text, text

    pem = tmp_path / "key.pem"
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pem.write_bytes(KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    code, text = await _verify(settings, trusted_checkpoint=str(bare), public_key=str(pem))
    assert code == 0, text

    other = base64.b64encode(note.raw_public_key(Ed25519PrivateKey.generate().public_key()))
    code, text = await _verify(settings, trusted_checkpoint=str(kept), public_key=other.decode())
    assert code == 1 and "signature does not verify" in text, text

    code, text = await _verify(settings, trusted_checkpoint=str(tmp_path / "none"))
    assert code == 2 and "cannot read" in text
    (tmp_path / "junk").write_text("not a checkpoint")
    code, text = await _verify(settings, trusted_checkpoint=str(tmp_path / "junk"))
    assert code == 2 and "not a checkpoint" in text
    code, text = await _verify(settings, trusted_checkpoint=str(kept), public_key="AAAA")
    assert code == 2

    out = io.StringIO()
    assert (
        await auditor.verify(settings, all=True, fmt="json", trusted_checkpoint=str(kept), out=out)
        == 0
    )
    body = json.loads(out.getvalue())
    assert body["valid"] and body["trusted_checkpoint"]["root_matches"]
    assert body["tree"]["built_size"] == log.size


async def test_a_checkpoint_older_than_the_log_still_checks(
    log: Log, dsn: str, schema: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=dsn, db_schema=schema)
    kept = await _keep_checkpoint(log, tmp_path)
    repository = RelationshipRepository(log.store, make_mapper())
    await repository.save(walk_to("identification", mentee_id="mentee-3"))
    await catch_up(log.store)
    code, text = await _verify(settings, trusted_checkpoint=str(kept), public_key=PUBLIC)
    assert code == 0, text


async def test_the_command_line_takes_the_checkpoint_and_the_key(
    log: Log, dsn: str, schema: str, tmp_path: Path
) -> None:
    kept = await _keep_checkpoint(log, tmp_path)
    env = {**os.environ, "DATABASE_URL": dsn, "MENTORFLOW_DB_SCHEMA": schema}

    def mentorflow(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "service.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    args = ("verify", "--all", "--trusted-checkpoint", str(kept), "--public-key", PUBLIC)
    done = await asyncio.to_thread(mentorflow, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "public key: pinned" in done.stdout
    await edit_rechain_and_rebuild_the_tree(log)
    done = await asyncio.to_thread(mentorflow, *args)
    assert done.returncode == 1 and "MISMATCH" in done.stdout
    done = await asyncio.to_thread(mentorflow, "verify", "some-id", "--public-key", PUBLIC)
    assert done.returncode == 2

"""`mentorflow evidence export` in process: it signs a covering checkpoint
only with the key that signed the log's checkpoints, never a key of its own."""

from __future__ import annotations

import io
import json
from pathlib import Path
from uuid import UUID

import pytest

from domain.samples import Clock, walk_to
from service.auditor.evidence import export, verify
from service.composition.components import build
from service.platform.settings import Settings
from service.store.eventstore import EventStore
from service.verifiable.tree_builder import catch_up

pytestmark = pytest.mark.db


async def _saved(store: EventStore, dsn: str, data_dir: Path) -> UUID:
    relationship = walk_to("establishment")
    await build(Settings(data_dir=data_dir), store, dsn).application.save_decided(relationship)
    await catch_up(store)  # the stored tree, as its builder would extend it
    return relationship.id


def _settings(dsn: str, schema: str, data_dir: Path) -> Settings:
    return Settings(database_url=dsn, db_schema=schema, data_dir=data_dir)


async def test_export_signs_only_with_the_logs_key(
    store: EventStore, dsn: str, schema: str, tmp_path: Path
) -> None:
    rid = await _saved(store, dsn, tmp_path / "unused")
    out, err = io.StringIO(), io.StringIO()

    # no key here: nothing is signed, the command says why
    code = await export(_settings(dsn, schema, tmp_path / "no-key"), rid, out=out, err=err)
    assert code == 1 and "no signing key" in err.getvalue()
    assert not (tmp_path / "no-key").exists()

    # the service's key (its data directory): a checkpoint is published
    service_dir = tmp_path / "service"
    build(Settings(data_dir=service_dir), store, dsn).checkpoints.signing_key()
    bundle_file = tmp_path / "bundle.json"
    code = await export(
        _settings(dsn, schema, service_dir), rid, out_path=str(bundle_file), out=out, err=err
    )
    assert code == 0, err.getvalue()
    assert verify(str(bundle_file), out=out, err=err) == 0

    # another machine's key: it never signs this log's checkpoints
    components = build(Settings(data_dir=tmp_path / "unused"), store, dsn)
    relationship = await components.repository.load(rid)
    assert relationship is not None
    relationship.record(
        "concern.raised", {"category": "other", "severity": "low"}, Clock().envelope()
    )
    await components.application.save_decided(relationship)  # not covered by a checkpoint yet
    await catch_up(store)
    other_dir = tmp_path / "other"
    build(Settings(data_dir=other_dir), store, dsn).checkpoints.signing_key()
    err = io.StringIO()
    code = await export(_settings(dsn, schema, other_dir), rid, out=io.StringIO(), err=err)
    assert code == 1 and "no signing key" in err.getvalue(), err.getvalue()
    keys = await store.with_connection(
        lambda c: c.fetch("SELECT DISTINCT public_key FROM checkpoints")
    )
    assert len(keys) == 1


async def test_verify_reports_as_json(
    store: EventStore, dsn: str, schema: str, tmp_path: Path
) -> None:
    rid = await _saved(store, dsn, tmp_path)
    bundle_file = tmp_path / "bundle.json"
    build(Settings(data_dir=tmp_path), store, dsn).checkpoints.signing_key()
    assert await export(_settings(dsn, schema, tmp_path), rid, out_path=str(bundle_file)) == 0
    out = io.StringIO()
    assert verify(str(bundle_file), fmt="json", out=out) == 0
    report = json.loads(out.getvalue())
    assert report["valid"] and not report["key_pinned"] and report["failures"] == []

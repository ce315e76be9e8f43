"""Signed checkpoints on a real database: publishing (once per size, across
concurrent publishers), what they sign, their webhook messages, and the
publisher worker under the supervisor."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from uuid import uuid4

import pytest

from domain.verifiable import merkle
from domain.verifiable.note import parse_checkpoint, verify
from service.composition.components import Components, build
from service.platform.settings import Settings
from service.platform.supervisor import Supervisor
from service.store.eventstore import EventStore
from service.store.records import NewEvent
from service.verifiable.checkpoints import DEFAULT_ORIGIN_PREFIX
from service.verifiable.publisher import CheckpointPublisher
from service.verifiable.tree_builder import catch_up
from service.webhooks import endpoints
from service.webhooks.outbox import CHECKPOINT_GROUP, CHECKPOINT_TYPE
from service.webhooks.sealing import SecretSealer

pytestmark = pytest.mark.db


@pytest.fixture
def components(store: EventStore, dsn: str, tmp_path: Path) -> Components:
    return build(Settings(data_dir=tmp_path), store, dsn)


async def _append(store: EventStore, n: int) -> None:
    stream = uuid4()
    await store.append([NewEvent(stream, v, "t", f"payload {v}".encode()) for v in range(1, n + 1)])
    await catch_up(store)  # the stored tree, as its builder would extend it


async def test_publishes_a_signed_checkpoint_once_per_tree_size(
    components: Components, store: EventStore
) -> None:
    checkpoints = components.checkpoints
    assert await checkpoints.latest() is None
    empty = await checkpoints.publish()
    assert empty.new and empty.checkpoint.tree_size == 0
    assert empty.checkpoint.root_hash == merkle.EMPTY_ROOT
    assert not (await checkpoints.publish()).new

    await _append(store, 5)
    published = await checkpoints.publish()
    assert published.new
    cp = published.checkpoint
    assert cp.tree_size == 5
    assert cp.root_hash == await components.checkpoints.tree.root(5)
    origin = await checkpoints.origin()
    assert origin.startswith(DEFAULT_ORIGIN_PREFIX) and cp.origin == origin == cp.key_name
    key = components.checkpoints.signing_key()
    signed = parse_checkpoint(verify(cp.note, origin, key.public_key))
    assert (signed.origin, signed.tree_size, signed.root_hash) == (origin, 5, cp.root_hash)
    assert cp.public_key == key.public_key
    body = cp.to_dict()
    assert base64.b64decode(body["root_hash"]) == cp.root_hash
    assert body["note"].startswith(f"{origin}\n5\n{body['root_hash']}\n\n\u2014 {origin} ")

    again = await checkpoints.publish()
    assert not again.new and again.checkpoint == cp
    assert await checkpoints.at(5) == cp and await checkpoints.at(4) is None
    assert (await checkpoints.latest()) == cp
    # the origin is stable for the database
    assert await build(components.settings, store, components.dsn).checkpoints.origin() == origin


async def test_concurrent_publishers_sign_each_size_once(
    store: EventStore, dsn: str, tmp_path: Path
) -> None:
    await _append(store, 3)
    many = [build(Settings(data_dir=tmp_path), store, dsn).checkpoints for _ in range(4)]
    results = await asyncio.gather(*(c.publish() for c in many))
    assert sum(r.new for r in results) == 1
    assert {r.checkpoint.tree_size for r in results} == {3}
    count = await store.with_connection(lambda c: c.fetchval("SELECT count(*) FROM checkpoints"))
    assert count == 1


async def test_a_configured_origin_names_the_log_and_the_key(
    store: EventStore, dsn: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, log_origin="example.org/mentoring")
    cp = (await build(settings, store, dsn).checkpoints.publish()).checkpoint
    assert cp.note.startswith("example.org/mentoring\n0\n")
    assert cp.key_name == "example.org/mentoring"


async def test_each_checkpoint_is_queued_for_subscribers(
    components: Components, store: EventStore
) -> None:
    sealer = SecretSealer(None)
    everything, _ = await endpoints.create(
        store, "http://127.0.0.1:9/a", ["*"], None, sealer=sealer
    )
    witness, _ = await endpoints.create(
        store, "http://127.0.0.1:9/b", [CHECKPOINT_TYPE], None, sealer=sealer
    )
    other, _ = await endpoints.create(
        store, "http://127.0.0.1:9/c", ["relationship.*"], None, sealer=sealer
    )
    prefixed, _ = await endpoints.create(
        store, "http://127.0.0.1:9/d", ["relationship.*", "checkpoint.*"], None, sealer=sealer
    )
    await _append(store, 2)
    cp = (await components.checkpoints.publish()).checkpoint
    rows = await store.with_connection(
        lambda c: c.fetch(
            "SELECT endpoint_id, position, relationship_id, body FROM webhook_messages"
            " WHERE webhook_type = $1 ORDER BY endpoint_id",
            CHECKPOINT_TYPE,
        )
    )
    assert {str(r["endpoint_id"]) for r in rows} == {witness["id"], prefixed["id"]}
    assert not {everything["id"], other["id"]} & {str(r["endpoint_id"]) for r in rows}
    for row in rows:
        assert row["position"] == 2 and row["relationship_id"] == CHECKPOINT_GROUP
        body = row["body"]
        assert body["type"] == "org.mentorflow.checkpoint.published"
        assert body["source"] == "/checkpoints"
        assert body["data"] == {
            "origin": cp.origin,
            "tree_size": 2,
            "root_hash": base64.b64encode(cp.root_hash).decode(),
            "note": cp.note,
        }
    assert len({r["body"]["id"] for r in rows}) == 2  # one message id per endpoint


async def test_the_publisher_signs_when_the_log_grows(
    store: EventStore, dsn: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, checkpoint_interval_s=0.05)
    components = build(settings, store, dsn)
    publisher = CheckpointPublisher(components.checkpoints, settings.checkpoint_interval_s)
    supervisor = Supervisor()
    publisher.start(supervisor)
    try:
        await _append(store, 3)
        for _ in range(100):
            latest = await components.checkpoints.latest()
            if latest is not None and latest.tree_size == 3:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("no checkpoint of the grown log")
        await asyncio.sleep(0.2)  # nothing new to sign: no new checkpoint
        count = await store.with_connection(
            lambda c: c.fetchval("SELECT count(*) FROM checkpoints")
        )
        assert count == publisher.published <= 2
    finally:
        await supervisor.stop()


async def test_many_publishes_at_once_in_one_process_do_not_exhaust_the_pool(
    components: Components, store: EventStore
) -> None:
    await _append(store, 3)
    results = await asyncio.wait_for(
        asyncio.gather(*(components.checkpoints.publish() for _ in range(30))), timeout=30
    )
    assert sum(r.new for r in results) == 1

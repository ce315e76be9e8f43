"""The tree builder: stored nodes equal RFC 9162's tree at every step, it
never builds past a missing position, and the background task follows appends."""

from __future__ import annotations

import asyncio
import json
from uuid import uuid4

import pytest

from domain.verifiable import merkle
from service.platform.metrics import Metrics
from service.platform.supervisor import Supervisor
from service.store.eventstore import EventStore
from service.store.records import NewEvent
from service.verifiable.audit import audit_tree
from service.verifiable.tree import MerkleTree
from service.verifiable.tree_builder import NODES, TreeBuilder, catch_up, extend

pytestmark = pytest.mark.db

_LEAVES = (
    "SELECT sha256('\\x00'::bytea || mf_canonical(position, stream_id, version, event_id,"
    " topic, payload, metadata, recorded_at)) FROM events ORDER BY position"
)


async def _append(store: EventStore, count: int) -> None:
    for i in range(count):
        await store.append([NewEvent(uuid4(), 1, "t", f"event {i}".encode())])


async def _all_nodes(store: EventStore) -> dict[merkle.Node, bytes]:
    rows = await store.with_connection(
        lambda conn: conn.fetch("SELECT level, idx, hash FROM merkle_nodes")
    )
    return {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows}


def _expected(leaves: list[bytes]) -> dict[merkle.Node, bytes]:
    return merkle.completed_nodes(0, leaves, {})


async def test_steps_of_any_size_store_exactly_the_perfect_subtrees(store: EventStore) -> None:
    await _append(store, 5)
    async with store.pool.acquire() as conn:
        assert await extend(conn, 3) == (3, 3)
        await _append(store, 8)
        assert await extend(conn, 1) == (1, 4)
        assert await extend(conn, 100) == (9, 13)
        assert await extend(conn, 100) == (0, 13)
    leaves = [bytes(r[0]) for r in await store.with_connection(lambda c: c.fetch(_LEAVES))]
    assert await _all_nodes(store) == _expected(leaves)
    tree = MerkleTree(store)
    assert await tree.size() == 13
    for size in range(1, 14):
        assert await tree.root(size) == merkle.root(size, _expected(leaves[:size]))


async def test_never_builds_past_a_missing_position(store: EventStore) -> None:
    await _append(store, 6)
    await store.with_connection(lambda conn: conn.execute("DELETE FROM events WHERE position = 4"))
    assert await catch_up(store) == 3
    with pytest.raises(LookupError):
        await MerkleTree(store).root(4)


async def test_concurrent_builders_serialise(store: EventStore) -> None:
    await _append(store, 40)
    sizes = await asyncio.gather(*(catch_up(store, batch=3) for _ in range(3)))
    assert max(sizes) == 40
    leaves = [bytes(r[0]) for r in await store.with_connection(lambda c: c.fetch(_LEAVES))]
    assert await _all_nodes(store) == _expected(leaves)


async def _grows_to(tree: MerkleTree, size: int) -> None:
    async with asyncio.timeout(5):
        while True:
            if await tree.size() >= size:
                return
            await asyncio.sleep(0.02)


async def test_the_background_builder_follows_appends(store: EventStore, dsn: str) -> None:
    seen: list[tuple[int, int]] = []
    builder = TreeBuilder(
        store, dsn, poll_interval=5.0, on_progress=lambda s, p: seen.append((s, p))
    )
    standby = TreeBuilder(store, dsn, takeover_interval=0.05)
    supervisor, other = Supervisor(), Supervisor()
    builder.start(supervisor)
    await asyncio.sleep(0.3)
    standby.start(other)  # waits for the lock
    try:
        await _append(store, 7)
        tree = MerkleTree(store)
        await _grows_to(tree, 7)  # woken by the notification, not the 5 s poll
        assert builder.leading and not standby.leading
        assert seen[-1] == (7, 7)
        await supervisor.stop()  # the leader goes away: the standby takes over
        await _append(store, 2)
        await _grows_to(tree, 9)
        assert standby.leading
    finally:
        await supervisor.stop()
        await other.stop()


async def test_verify_reads_one_snapshot_while_the_builder_goes_on(store: EventStore) -> None:
    await _append(store, 120)
    async with store.pool.acquire() as conn:
        await extend(conn, 50)

    async def audit() -> list[str]:
        async with store.pool.acquire() as conn:
            return (await audit_tree(conn, batch=7)).problems()

    results = await asyncio.gather(audit(), catch_up(store, batch=3), audit(), audit())
    assert results[0] == results[2] == results[3] == []
    assert (await audit()) == []


def test_the_metrics_show_size_and_lag() -> None:
    metrics = Metrics()
    metrics.tree_built(5, 8)
    text = metrics.render().decode()
    assert "mentorflow_merkle_tree_size 5.0" in text
    assert "mentorflow_merkle_tree_lag_events 3.0" in text


async def test_fetching_nodes_probes_the_index_even_with_a_plan_made_unanalysed(
    store: EventStore,
) -> None:
    """The plan a connection keeps (the generic one) is made while
    merkle_nodes is new and unanalysed: it must still probe the primary key,
    not scan the whole table for every step of the builder."""
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE nodes_probe(smallint[], bigint[]) AS {NODES}")
        plan = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) EXECUTE nodes_probe('{0,1,2}', '{5,2,1}')"
        )
        await conn.execute("DEALLOCATE nodes_probe")
    text = json.dumps(plan)
    assert "Seq Scan" not in text and "merkle_nodes_pkey" in text, text

"""The tree the service reads equals RFC 9162's over the canonical bytes the chains cover."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from domain.verifiable import merkle
from domain.verifiable.canonical import canonical
from service.store.eventstore import EventStore
from service.store.records import NewEvent
from service.verifiable.tree import MerkleTree
from service.verifiable.tree_builder import catch_up

pytestmark = pytest.mark.db

_CANONICAL = (
    "SELECT mf_canonical(position, stream_id, version, event_id, topic, payload, metadata,"
    " recorded_at) FROM events ORDER BY position"
)


async def test_roots_and_proofs_match_the_canonical_bytes(store: EventStore) -> None:
    for n in range(9):
        stream = uuid4()
        events = [
            NewEvent(stream, v, "t", f"payload {n} {v}".encode()) for v in range(1, n % 3 + 2)
        ]
        await store.append(events)
    rows = await store.with_connection(lambda conn: conn.fetch(_CANONICAL))
    leaves = [bytes(r[0]) for r in rows]
    tree = MerkleTree(store)
    assert await tree.size() == 0  # nothing built yet
    await catch_up(store, batch=4)  # several steps
    size = await tree.size()
    assert size == len(leaves) > 10
    nodes: dict[merkle.Node, bytes] = {}
    for i, data in enumerate(leaves):
        known = {n: nodes[n] for n in merkle.frontier_nodes(i)}
        nodes.update(merkle.completed_nodes(i, [merkle.leaf_hash(data)], known))
    for s in (1, 2, 7, size):
        root = await tree.root(s)
        assert root == merkle.root(s, nodes)
        for index in range(s):
            proof = await tree.inclusion_proof(index, s)
            assert merkle.verify_inclusion(index, s, merkle.leaf_hash(leaves[index]), proof, root)
        assert merkle.verify_consistency(
            s, size, root, await tree.root(size), await tree.consistency_proof(s, size)
        )


async def test_the_python_canonical_bytes_equal_mf_canonical(store: EventStore) -> None:
    await store.append(
        [NewEvent(uuid4(), 1, "relationship.opened", b"\x00\xff{}", {"actor": "\u00e9 x", "n": 1})]
    )
    await store.append([NewEvent(uuid4(), 1, "t", b"", {})])
    rows = await store.with_connection(
        lambda conn: conn.fetch(
            "SELECT *, metadata::text AS metadata_text, mf_canonical(position, stream_id,"
            " version, event_id, topic, payload, metadata, recorded_at) AS expected"
            " FROM events ORDER BY position"
        )
    )
    for row in rows:
        made = canonical(
            row["position"],
            UUID(str(row["stream_id"])),
            row["version"],
            UUID(str(row["event_id"])),
            row["topic"],
            row["payload"],
            row["metadata_text"],
            row["recorded_at"],
        )
        assert made == bytes(row["expected"])

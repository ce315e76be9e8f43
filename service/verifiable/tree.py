"""The Merkle tree over the global log (RFC 9162 §2.1), as the service reads it.

Leaf p-1 is SHA-256(0x00 || canonical bytes of the event at position p), the
same bytes its stream's hash chain covers (`mf_canonical` in the migrations).

The tree is stored as perfect subtrees (table `merkle_nodes`, written by the
tree builder, `service.verifiable.tree_builder`); a root or proof reads the
O(log² n) nodes it needs in one query. `size()` is the built size: roots and
proofs are served up to it.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from domain.verifiable import merkle
from domain.verifiable.merkle import Node
from service.store.eventstore import EventStore
from service.verifiable.tree_builder import fetch_nodes

_SIZE = "SELECT size FROM merkle_tree"


class MerkleTree:
    """Roots and proofs of the global log at any size up to `size()`."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def size(self) -> int:
        """How many leaves the tree holds now (proofs and roots go up to here)."""
        value: int = await self.store.with_connection(lambda conn: conn.fetchval(_SIZE))
        return value

    async def nodes(self, wanted: Iterable[Node]) -> dict[Node, bytes]:
        """The hashes of the given perfect subtrees (all must lie within `size()`)."""
        asked = set(wanted)

        async def fetch(conn: asyncpg.Connection) -> dict[Node, bytes]:
            return await fetch_nodes(conn, asked)

        found = await self.store.with_connection(fetch)
        if len(found) != len(asked):
            missing = sorted(asked - set(found))
            raise LookupError(f"the stored tree has no subtree {missing[0]}")
        return found

    async def root(self, size: int) -> bytes:
        return merkle.root(size, await self.nodes(merkle.root_nodes(size)))

    async def leaf_hash(self, index: int) -> bytes:
        return (await self.nodes([(0, index)]))[(0, index)]

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3 audit path of leaf `index` (position index+1) in the tree of `size`."""
        return merkle.inclusion_proof(
            index, size, await self.nodes(merkle.inclusion_nodes(index, size))
        )

    async def inclusion_proofs(self, indexes: Iterable[int], size: int) -> dict[int, list[bytes]]:
        """The audit paths of many leaves in one tree, from one read of the nodes
        they need (a relationship's whole history in an evidence bundle)."""
        wanted = list(indexes)
        nodes = await self.nodes({n for i in wanted for n in merkle.inclusion_nodes(i, size)})
        return {i: merkle.inclusion_proof(i, size, nodes) for i in wanted}

    async def inclusion(self, index: int, size: int) -> tuple[bytes, list[bytes]]:
        """The leaf hash and its audit path, from one read of the stored nodes."""
        nodes = await self.nodes(merkle.inclusion_nodes(index, size))
        return nodes[(0, index)], merkle.inclusion_proof(index, size, nodes)

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """RFC 9162 §2.1.4 proof that the tree of `first` leaves is a prefix of `second`'s."""
        return merkle.consistency_proof(
            first, second, await self.nodes(merkle.consistency_nodes(first, second))
        )

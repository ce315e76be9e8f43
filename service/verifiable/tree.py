"""The Merkle tree over the global log (RFC 9162 §2.1), as the service reads it.

Leaf p-1 is SHA-256(0x00 || canonical bytes of the event at position p), the
same bytes its stream's hash chain covers (`mf_canonical` in the migrations).

INTERIM implementation: every perfect subtree is recomputed from the events'
leaf hashes on demand (correct, O(n)). The stored tree replaces the inside of
this class; its interface stays.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from domain.verifiable import merkle
from domain.verifiable.merkle import Node
from service.store.eventstore import EventStore

_LEAVES = (
    "SELECT sha256('\\x00'::bytea || mf_canonical(position, stream_id, version, event_id, topic,"
    " payload, metadata, recorded_at)) FROM events"
    " WHERE position > $1 AND position <= $2 ORDER BY position"
)


class MerkleTree:
    """Roots and proofs of the global log at any size up to `size()`."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def size(self) -> int:
        """How many leaves the tree holds now (proofs and roots go up to here)."""
        return await self.store.max_position()

    async def nodes(self, wanted: Iterable[Node]) -> dict[Node, bytes]:
        """The hashes of the given perfect subtrees (all must lie within `size()`)."""
        found: dict[Node, bytes] = {}
        for level, index in wanted:
            first, last = index << level, (index + 1) << level
            rows = await self._leaves(first, last)
            leaves = [bytes(r[0]) for r in rows]
            if len(leaves) != last - first:
                raise LookupError(f"the log has no complete subtree {(level, index)}")
            found[(level, index)] = merkle.range_hash(
                0, len(leaves), {(0, i): leaf for i, leaf in enumerate(leaves)} | _perfect(leaves)
            )
        return found

    async def _leaves(self, first: int, last: int) -> list[asyncpg.Record]:
        async def fetch(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            rows: list[asyncpg.Record] = await conn.fetch(_LEAVES, first, last)
            return rows

        return await self.store.with_connection(fetch)

    async def root(self, size: int) -> bytes:
        return merkle.root(size, await self.nodes(merkle.root_nodes(size)))

    async def leaf_hash(self, index: int) -> bytes:
        return (await self.nodes([(0, index)]))[(0, index)]

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3 audit path of leaf `index` (position index+1) in the tree of `size`."""
        return merkle.inclusion_proof(
            index, size, await self.nodes(merkle.inclusion_nodes(index, size))
        )

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """RFC 9162 §2.1.4 proof that the tree of `first` leaves is a prefix of `second`'s."""
        return merkle.consistency_proof(
            first, second, await self.nodes(merkle.consistency_nodes(first, second))
        )


def _perfect(leaves: list[bytes]) -> dict[Node, bytes]:
    made: dict[Node, bytes] = {}
    for size, leaf in enumerate(leaves):
        known = {n: made[n] for n in merkle.frontier_nodes(size)}
        made.update(merkle.completed_nodes(size, [leaf], known))
    return made

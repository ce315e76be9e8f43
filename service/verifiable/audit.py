"""Recomputing the Merkle tree from the events, to check what the database holds.

One pass over the global log in position order: each event's canonical bytes
are rebuilt in Python from its stored columns (`domain.verifiable.canonical`,
not the database's own `mf_canonical`), hashed into leaves, folded into the
perfect subtrees they complete, and compared with the stored nodes as it
goes; the roots at the sizes asked for (a trusted checkpoint's, and those of
checkpoints kept in the database) are taken on the way. Memory stays bounded:
only the tree's right frontier is kept between batches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from domain.verifiable import merkle
from domain.verifiable.canonical import canonical
from service.verifiable.tree_builder import fetch_nodes

BATCH = 10_000
_EVENTS = (
    "SELECT position, stream_id, version, event_id, topic, payload, metadata::text AS metadata,"
    " recorded_at FROM events WHERE position > $1 ORDER BY position LIMIT $2"
)
_BUILT = "SELECT size FROM merkle_tree"
_COUNTER = "SELECT last_position FROM event_position"
_MAX_POSITION = "SELECT max(position) FROM events"
_STORED_NODES_BEYOND = (
    "SELECT l AS level, (SELECT min(idx) FROM merkle_nodes WHERE level = l AND idx >= ($1 >> l))"
    " AS idx FROM generate_series(0, 62) AS l"
)


def _leaf(row: asyncpg.Record) -> bytes:
    return merkle.leaf_hash(
        canonical(
            row["position"],
            str(row["stream_id"]),
            row["version"],
            str(row["event_id"]),
            row["topic"],
            bytes(row["payload"]),
            row["metadata"],
            row["recorded_at"],
        )
    )


def first_leaf(node: merkle.Node) -> int:
    """The position of the first event a perfect subtree covers."""
    level, index = node
    return (index << level) + 1


@dataclass
class TreeAudit:
    """What one pass found. Positions are the log's (leaf index + 1)."""

    contiguous: int = 0
    """Events at positions 1..contiguous, with no position missing."""
    log_end: int = 0
    """The highest position holding an event."""
    counter: int = 0
    """The position counter (the last position handed out)."""
    built: int = 0
    """The stored tree's size."""
    roots: dict[int, bytes] = field(default_factory=dict)
    """Recomputed roots at the sizes asked for (those within `contiguous`)."""
    first_mismatch: merkle.Node | None = None
    """The first stored subtree, in the order leaves arrive, that differs from
    the recomputed one or is missing: a leaf (level 0) names an event altered
    after the tree was built; a higher node whose leaves all match names a
    stored node altered."""
    stored_beyond: merkle.Node | None = None
    """A stored subtree covering positions past the stored tree's size."""

    @property
    def first_difference(self) -> int | None:
        """The first position at which the stored tree and the events disagree."""
        found = [
            p
            for p in (
                first_leaf(self.first_mismatch) if self.first_mismatch else None,
                self.contiguous + 1 if self.built > self.contiguous else None,
                first_leaf(self.stored_beyond) if self.stored_beyond else None,
            )
            if p is not None
        ]
        return min(found) if found else None

    def problems(self) -> list[str]:
        said: list[str] = []
        if self.first_mismatch is not None:
            level, index = self.first_mismatch
            first = first_leaf(self.first_mismatch)
            if level == 0:
                said.append(
                    f"the event at position {first} does not hash to the stored leaf "
                    "(altered, replaced or moved since the tree was built)"
                )
            else:
                said.append(
                    f"the stored tree node (level {level}, index {index}) over positions "
                    f"{first}..{first + (1 << level) - 1} is not the hash of its leaves"
                )
        if self.built > self.contiguous:
            said.append(
                f"the stored tree covers {self.built} events but the log holds positions "
                f"1..{self.contiguous} only (events deleted from position {self.contiguous + 1})"
            )
        if self.stored_beyond is not None:
            said.append(
                f"the stored tree holds nodes past its size {self.built} "
                f"(from position {first_leaf(self.stored_beyond)})"
            )
        if self.counter < self.log_end:
            said.append(
                f"the position counter ({self.counter}) is below the last event's position "
                f"({self.log_end})"
            )
        if self.counter < self.built:
            said.append(
                f"the position counter ({self.counter}) is below the stored tree's size "
                f"({self.built}): it was moved back"
            )
        return said

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": not self.problems(),
            "contiguous_events": self.contiguous,
            "built_size": self.built,
            "position_counter": self.counter,
            "first_difference": self.first_difference,
            "problems": self.problems(),
        }


async def audit_tree(
    conn: asyncpg.Connection, root_sizes: Iterable[int] = (), batch: int = BATCH
) -> TreeAudit:
    """Recompute the tree over the events at positions 1, 2, ... (up to the
    first missing one) and compare it with the stored one, all in one
    snapshot (appends and the tree builder may go on meanwhile)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await _audit(conn, root_sizes, batch)


async def _audit(conn: asyncpg.Connection, root_sizes: Iterable[int], batch: int) -> TreeAudit:
    audit = TreeAudit(
        built=await conn.fetchval(_BUILT),
        counter=await conn.fetchval(_COUNTER),
        log_end=await conn.fetchval(_MAX_POSITION) or 0,
    )
    wanted = sorted({s for s in root_sizes if s > 0})
    frontier: dict[merkle.Node, bytes] = {}
    size = 0
    while True:
        rows = await conn.fetch(_EVENTS, size, batch)
        leaves = []
        for expected, row in enumerate(rows, start=size + 1):
            if row["position"] != expected:
                break
            leaves.append(_leaf(row))
        done = 0
        while done < len(leaves):
            # stop at every size whose root is asked for: the root is the frontier's fold
            upto = next((s for s in wanted if size < s <= size + len(leaves) - done), None)
            chunk = leaves[done : (upto - size + done) if upto else len(leaves)]
            made = merkle.completed_nodes(size, chunk, frontier)
            await _compare(conn, audit, made)
            size += len(chunk)
            done += len(chunk)
            merged = {**frontier, **made}
            frontier = {n: merged[n] for n in merkle.frontier_nodes(size)}
            if size in wanted:
                audit.roots[size] = merkle.root(size, frontier)
        if len(leaves) < len(rows) or len(rows) < batch:
            break
    audit.contiguous = size
    beyond = [
        (r["level"], r["idx"])
        for r in await conn.fetch(_STORED_NODES_BEYOND, audit.built)
        if r["idx"] is not None
    ]
    if beyond:
        audit.stored_beyond = min(beyond, key=lambda n: (first_leaf(n), n[0]))
    return audit


async def _compare(
    conn: asyncpg.Connection, audit: TreeAudit, made: dict[merkle.Node, bytes]
) -> None:
    """Compare recomputed subtrees with the stored ones, within the built size,
    in the order their last leaf arrived (a leaf before the nodes above it)."""
    if audit.first_mismatch is not None:
        return  # the first difference is known
    within = [node for node in made if (node[1] + 1) << node[0] <= audit.built]
    stored = await fetch_nodes(conn, set(within))
    for node in sorted(within, key=lambda n: ((n[1] + 1) << n[0], n[0])):
        if stored.get(node) != made[node]:
            audit.first_mismatch = node
            return

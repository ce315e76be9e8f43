"""Evidence bundles: one relationship's events with their canonical bytes,
chain hashes and audit paths into one signed checkpoint, checkable offline
(domain.verifiable.evidence verifies them; docs/verification.md documents
the format). Also the inclusion status `GET .../audit/verify` reports.

A bundle needs a checkpoint covering the relationship's last event. Without
`tree_size`, the latest one is used, and when it does not cover the last
event yet, a checkpoint is published first (the same one the publisher would
sign within its interval), so a bundle is always available at once. With
`tree_size`, that stored checkpoint is used, or the request is refused.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from domain.verifiable import merkle
from domain.verifiable.note import NoteError, verify
from service.store.eventstore import EventStore
from service.store.records import StoredRecord
from service.verifiable.checkpoints import Checkpoints, StoredCheckpoint

_STREAM = (  # with the relationship's wrapped data key, which decoding needs (docs/erasure.md)
    "SELECT e.position, e.stream_id, e.version, e.event_id, e.topic, e.payload, e.metadata,"
    " e.recorded_at, e.chain_hash, mf_canonical(e.position, e.stream_id, e.version, e.event_id,"
    " e.topic, e.payload, e.metadata, e.recorded_at) AS canonical, k.wrapped_key FROM events e"
    " LEFT JOIN data_keys k ON k.stream_id = e.stream_id WHERE e.stream_id = $1"
    " ORDER BY e.version"
)

EventView = Callable[[StoredRecord], dict[str, Any]]
"""The recorded event as the caller's role may read it."""


class EvidenceRefused(Exception):
    """A bundle that cannot be built as asked; `kind` is the problem type
    (`not-found`, `validation-error`, `unavailable`), `field` the query
    parameter at fault for a validation error."""

    def __init__(self, kind: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.field = field


@dataclass(frozen=True)
class _Row:
    record: StoredRecord
    canonical: bytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def _stream(store: EventStore, relationship_id: UUID) -> list[_Row]:
    async def fetch(conn: asyncpg.Connection) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await conn.fetch(_STREAM, relationship_id)
        return rows

    rows = await store.with_connection(fetch)
    return [
        _Row(
            StoredRecord(
                position=r["position"],
                stream_id=UUID(bytes=r["stream_id"].bytes),
                version=r["version"],
                event_id=UUID(bytes=r["event_id"].bytes),
                topic=r["topic"],
                payload=bytes(r["payload"]),
                metadata=r["metadata"],
                recorded_at=r["recorded_at"],
                chain_hash=bytes(r["chain_hash"]),
                data_key=r["wrapped_key"],
            ),
            bytes(r["canonical"]),
        )
        for r in rows
    ]


class Evidence:
    def __init__(self, store: EventStore, checkpoints: Checkpoints) -> None:
        self.store = store
        self.checkpoints = checkpoints
        self.tree = checkpoints.tree

    async def bundle(
        self,
        relationship_id: UUID,
        view: EventView,
        *,
        tree_size: int | None = None,
        since: int | None = None,
        may_publish: bool = True,
    ) -> dict[str, Any] | None:
        """The bundle (None for an unknown relationship). `since`: also prove
        that the tree of that size (a checkpoint the auditor kept) and the
        bundle's are one log (a `consistency` proof between the two sizes).
        `may_publish`: publish a checkpoint when none covers the relationship
        yet (otherwise refuse)."""
        rows = await _stream(self.store, relationship_id)
        if not rows:
            return None
        checkpoint = await self._checkpoint(rows[-1].record, tree_size, may_publish)
        size = checkpoint.tree_size
        paths = await self.tree.inclusion_proofs((row.record.position - 1 for row in rows), size)
        events = []
        for row in rows:
            path = paths[row.record.position - 1]
            events.append(
                {
                    "position": row.record.position,
                    "version": row.record.version,
                    "canonical": _b64(row.canonical),
                    "chain_hash": _b64(row.record.chain_hash),
                    "audit_path": [_b64(node) for node in path],
                    "event": view(row.record),
                }
            )
        bundle: dict[str, Any] = {
            "relationship_id": str(relationship_id),
            "checkpoint": checkpoint.to_dict(),
            "events": events,
        }
        if since is not None:
            bundle["consistency"] = await self._consistency(since, size)
        return bundle

    async def _checkpoint(
        self, last: StoredRecord, tree_size: int | None, may_publish: bool
    ) -> StoredCheckpoint:
        if tree_size is not None:
            found = await self.checkpoints.at(tree_size)
            if found is None:
                raise EvidenceRefused("not-found", f"no checkpoint of tree size {tree_size}")
            if found.tree_size < last.position:
                raise EvidenceRefused(
                    "validation-error",
                    f"the checkpoint of tree size {tree_size} does not cover version"
                    f" {last.version} of the relationship (position {last.position})",
                    "tree_size",
                )
            return found
        latest = await self.checkpoints.latest()
        if latest is not None and latest.tree_size >= last.position:
            return latest
        if not may_publish:
            raise EvidenceRefused(
                "unavailable",
                f"no checkpoint covers position {last.position} yet, and this process has no"
                " signing key of this log to publish one: wait for the service to publish one"
                " (at most MENTORFLOW_CHECKPOINT_INTERVAL seconds) or POST /v1/checkpoints",
            )
        published = (await self.checkpoints.publish()).checkpoint
        if published.tree_size < last.position:  # the tree trails the log for a moment
            raise EvidenceRefused(
                "unavailable",
                f"the Merkle tree does not reach position {last.position} yet; retry shortly",
            )
        return published

    async def _consistency(self, since: int, size: int) -> dict[str, Any]:
        first, second = sorted((since, size))
        if second > await self.tree.size():
            raise EvidenceRefused(
                "validation-error", f"the log has no tree of size {second}", "since"
            )
        proof = [] if first == second else await self.tree.consistency_proof(first, second)
        return {"first": first, "second": second, "proof": [_b64(node) for node in proof]}

    async def inclusion(self, relationship_id: UUID, public_key: bytes) -> dict[str, Any] | None:
        """Whether the relationship's events are in the latest checkpoint: the
        checkpoint's signature checked with the service's own key (not the
        one stored beside it), and each covered event's leaf, recomputed from
        what is stored now, proven into the signed root. None: no checkpoint yet."""
        latest = await self.checkpoints.latest()
        if latest is None:
            return None
        rows = await _stream(self.store, relationship_id)
        covered = [row for row in rows if row.record.position <= latest.tree_size]
        status: dict[str, Any] = {
            "tree_size": latest.tree_size,
            "root_hash": _b64(latest.root_hash),
            "timestamp": latest.created_at.isoformat(),
            "signature_valid": _signed_by(latest, public_key),
            "events_covered": len(covered),
            "events_after": len(rows) - len(covered),
            "first_not_included_version": None,
        }
        try:
            paths = await self.tree.inclusion_proofs(
                (row.record.position - 1 for row in covered), latest.tree_size
            )
        except LookupError:  # stored nodes missing: no event can be proven
            paths = {}
        for row in covered:
            index = row.record.position - 1
            leaf = merkle.leaf_hash(row.canonical)
            path = paths.get(index, [])
            if not merkle.verify_inclusion(index, latest.tree_size, leaf, path, latest.root_hash):
                status["first_not_included_version"] = row.record.version
                break
        status["included"] = bool(
            status["signature_valid"]
            and status["first_not_included_version"] is None
            and status["events_after"] == 0
        )
        return status


def _signed_by(checkpoint: StoredCheckpoint, public_key: bytes) -> bool:
    try:
        text = verify(checkpoint.note, checkpoint.key_name, public_key)
    except NoteError:
        return False
    expected = checkpoint.note.split("\n\n", 1)[0] + "\n"
    lines = expected.split("\n")
    return (
        text == expected
        and lines[1] == str(checkpoint.tree_size)
        and lines[2] == _b64(checkpoint.root_hash)
    )

"""The Merkle tree part of `mentorflow verify --all [--trusted-checkpoint FILE]`.

Without a checkpoint: the tree recomputed from the events must equal the stored
one (this catches edits made after the tree was built, but not a rewrite that
rebuilt the stored tree too: for that the database has nothing to compare with).

With a checkpoint kept outside the database: its root must equal the root
recomputed from the events at its size. Where they differ, the first differing
position is named: exactly, when the stored leaves were left as they were;
otherwise between two signed checkpoints kept in the database (each one's
signature checked with the same key), or as a range.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from domain.verifiable import note
from domain.verifiable.note import CheckpointFile, NoteError
from service.store.eventstore import EventStore
from service.verifiable.audit import TreeAudit, audit_tree

_HAS_CHECKPOINTS = "SELECT to_regclass('checkpoints') IS NOT NULL"
_STORED_CHECKPOINTS = "SELECT tree_size, note FROM checkpoints WHERE tree_size < $1"


class CheckError(ValueError):
    """A checkpoint or key that cannot be used (a usage error, not a verdict)."""


def read_public_key(raw: str) -> bytes:
    """A PEM file, or the base64 of the 32-byte Ed25519 key (given, or in a file)."""
    text = raw
    with contextlib.suppress(OSError, ValueError):
        path = Path(raw)
        if path.is_file():
            text = path.read_text()
    if "-----BEGIN" in text:
        try:
            key = load_pem_public_key(text.encode())
        except ValueError as exc:
            raise CheckError(f"not a PEM public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise CheckError("the public key is not an Ed25519 key")
        return note.raw_public_key(key)
    try:
        data = base64.b64decode(text.strip(), validate=True)
    except binascii.Error as exc:
        raise CheckError("the public key is neither PEM nor base64") from exc
    if len(data) != 32:
        raise CheckError("an Ed25519 public key is 32 bytes")
    return data


def read_trusted(path: str) -> CheckpointFile:
    try:
        return note.read_checkpoint_file(Path(path).read_text())
    except OSError as exc:
        raise CheckError(f"cannot read {path}: {exc}") from exc
    except (NoteError, UnicodeDecodeError) as exc:
        raise CheckError(f"{path} is not a checkpoint: {exc}") from exc


@dataclass
class TrustedResult:
    tree_size: int
    origin: str
    key_status: str
    """"pinned", "from the checkpoint file (not pinned)", or "none (signature not checked)"."""
    signature_ok: bool
    matches: bool = False
    first_difference: int | None = None
    difference_range: tuple[int, int] | None = None
    detail: str = ""

    @property
    def valid(self) -> bool:
        return self.signature_ok and self.matches

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "tree_size": self.tree_size,
            "origin": self.origin,
            "key": self.key_status,
            "signature_valid": self.signature_ok,
            "root_matches": self.matches,
            "first_difference": self.first_difference,
            "difference_range": list(self.difference_range) if self.difference_range else None,
            "detail": self.detail,
        }


@dataclass
class TreeReport:
    audit: TreeAudit
    trusted: TrustedResult | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.audit.problems() and (self.trusted is None or self.trusted.valid)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tree": self.audit.to_dict(),
            "trusted_checkpoint": self.trusted.to_dict() if self.trusted else None,
        }

    def lines(self) -> list[str]:
        out = [f"merkle tree: {problem}" for problem in self.audit.problems()]
        if not out:
            out.append(f"merkle tree: stored tree of {self.audit.built} events matches the events")
        trusted = self.trusted
        if trusted is not None:
            out.append(
                f"trusted checkpoint: {trusted.origin}, size {trusted.tree_size}; "
                f"public key: {trusted.key_status}"
            )
            if trusted.valid:
                out.append("trusted checkpoint: the log's first events hash to its root")
            else:
                out.append(f"trusted checkpoint: MISMATCH: {trusted.detail}")
        return out


async def check_tree(
    store: EventStore, trusted_path: str | None = None, public_key: str | None = None
) -> TreeReport:
    """Raises CheckError for an unusable checkpoint file or key."""
    trusted = read_trusted(trusted_path) if trusted_path else None
    pinned = read_public_key(public_key) if public_key else None

    async def run(conn: asyncpg.Connection) -> TreeReport:
        if trusted is None:
            return TreeReport(await audit_tree(conn))
        return await _against(conn, trusted, pinned)

    return await store.with_connection(run)


async def _against(
    conn: asyncpg.Connection, trusted: CheckpointFile, pinned: bytes | None
) -> TreeReport:
    checkpoint = trusted.checkpoint
    key = pinned if pinned is not None else trusted.public_key
    status = (
        "pinned"
        if pinned is not None
        else "from the checkpoint file (not pinned; pass --public-key to pin it)"
        if key is not None
        else "none (the signature was not checked; pass --public-key)"
    )
    result = TrustedResult(checkpoint.tree_size, checkpoint.origin, status, True)
    if key is not None:
        try:
            note.verify(trusted.note, trusted.key_name, key)
        except (NoteError, ValueError) as exc:
            result.signature_ok = False
            result.detail = f"the checkpoint's signature does not verify: {exc}"
    stored = await _stored_checkpoints(conn, checkpoint.tree_size, trusted.key_name, key)
    audit = await audit_tree(conn, [checkpoint.tree_size, *stored])
    if result.signature_ok:
        _compare(result, audit, checkpoint.tree_size, checkpoint.root_hash, stored)
    return TreeReport(audit, result)


def _compare(
    result: TrustedResult, audit: TreeAudit, size: int, root: bytes, stored: dict[int, bytes]
) -> None:
    if size == 0:
        result.matches = True
        return
    if audit.contiguous < size:
        result.first_difference = audit.contiguous + 1
        result.detail = (
            f"the log holds positions 1..{audit.contiguous} only; the checkpoint covers "
            f"{size} events: first differing position {audit.contiguous + 1}"
        )
        return
    if audit.roots[size] == root:
        result.matches = True
        return
    mismatch = audit.first_mismatch
    if mismatch is not None and mismatch[0] == 0 and mismatch[1] < size:
        # the stored leaves were left as built: the first one that differs is exact
        result.first_difference = mismatch[1] + 1
        result.detail = f"first differing position {mismatch[1] + 1}"
        return
    low, high = 0, size
    for tree_size in sorted(stored):
        if audit.roots.get(tree_size) == stored[tree_size]:
            low = max(low, tree_size)
        else:
            high = min(high, tree_size)
            break
    result.difference_range = (low + 1, high)
    if low + 1 == high:
        result.first_difference = high
        result.detail = f"first differing position {high}"
    else:
        result.detail = (
            f"the root recomputed from the events differs; the first differing position "
            f"is in {low + 1}..{high} (the stored tree was rebuilt to match the events"
            + (
                ", and no signed checkpoint in the database narrows it further)"
                if not stored
                else ")"
            )
        )


async def _stored_checkpoints(
    conn: asyncpg.Connection, below: int, key_name: str, key: bytes | None
) -> dict[int, bytes]:
    """Roots of the checkpoints kept in the database below `below`, those whose
    signature verifies with the trusted key only (none without a key)."""
    if key is None or not await conn.fetchval(_HAS_CHECKPOINTS):
        return {}
    try:
        rows = await conn.fetch(_STORED_CHECKPOINTS, below)
    except asyncpg.PostgresError:
        return {}  # a table of another shape: nothing to narrow with
    found: dict[int, bytes] = {}
    for row in rows:
        try:
            text = note.verify(str(row["note"]), key_name, key)
            parsed = note.parse_checkpoint(text)
        except (NoteError, ValueError):
            continue
        if parsed.tree_size == row["tree_size"]:
            found[parsed.tree_size] = parsed.root_hash
    return found

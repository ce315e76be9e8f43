"""Offline verification of an evidence bundle (pure: no database, no files).

A bundle (docs/verification.md, "Evidence bundles") holds one relationship's
events, each with its canonical bytes, chain hash and audit path, and a signed
checkpoint. It is valid when:

- the checkpoint's note is signed by the key (pinned by the caller, or else
  the one the bundle names, which proves only that the bundle is consistent
  with itself), the key id in the signature matches the key, and the JSON
  fields beside the note say what the signed text says;
- the events are the relationship's versions 1, 2, ... in order, each chain
  hash is SHA-256(previous chain hash || canonical) from the empty string;
- each event's canonical bytes name its position, relationship, version, id
  and type, as the event beside them does;
- each event's leaf hash, with its audit path, gives the checkpoint's root;
- with a trusted checkpoint (kept by the auditor): it is signed by the same
  key, has the same origin, and is the bundle's checkpoint, or the bundle
  carries a consistency proof between the two tree sizes that verifies.

Every check is made, and every failure named, not only the first.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.verifiable import merkle
from domain.verifiable.note import (
    CheckpointFile,
    NoteError,
    key_id,
    parse_checkpoint,
    verify,
)

UNIT_SEPARATOR = b"\x1f"
CANONICAL_FIELDS = 8
"""position, stream id, version, event id, topic, metadata, recorded_at, payload."""
MAX_FAILURES = 50


class Malformed(ValueError):
    """The bundle does not have the documented shape."""


@dataclass
class Verdict:
    relationship_id: str | None = None
    origin: str | None = None
    tree_size: int | None = None
    key_name: str | None = None
    key_id: str | None = None
    key_pinned: bool = False
    events_checked: int = 0
    trusted_size: int | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.failures

    def fail(self, message: str) -> None:
        if len(self.failures) < MAX_FAILURES:
            self.failures.append(message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "relationship_id": self.relationship_id,
            "origin": self.origin,
            "tree_size": self.tree_size,
            "key_name": self.key_name,
            "key_id": self.key_id,
            "key_pinned": self.key_pinned,
            "events_checked": self.events_checked,
            "trusted_tree_size": self.trusted_size,
            "failures": list(self.failures),
        }


@dataclass(frozen=True)
class CanonicalFields:
    """What an event's canonical bytes say (docs/verification.md)."""

    position: int
    stream_id: str
    version: int
    event_id: str
    topic: str
    metadata: Mapping[str, Any]
    recorded_at_us: int
    payload: bytes


def parse_canonical(data: bytes) -> CanonicalFields:
    """Split canonical bytes at the first seven 0x1F bytes (the payload, last,
    may hold any byte)."""
    parts = data.split(UNIT_SEPARATOR, CANONICAL_FIELDS - 1)
    if len(parts) != CANONICAL_FIELDS:
        raise Malformed("canonical bytes do not have eight fields")
    try:
        text = [p.decode("utf-8") for p in parts[:7]]
        metadata = json.loads(text[5])
        fields = CanonicalFields(
            position=_decimal(text[0]),
            stream_id=text[1],
            version=_decimal(text[2]),
            event_id=text[3],
            topic=text[4],
            metadata=metadata if isinstance(metadata, dict) else {},
            recorded_at_us=int(text[6]),
            payload=parts[7],
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise Malformed(f"canonical bytes unreadable: {exc}") from None
    if not isinstance(metadata, dict):
        raise Malformed("canonical metadata is not a JSON object")
    return fields


def _decimal(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"{text!r} is not a decimal number")
    return int(text)


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise Malformed(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Malformed(f"{what} is not standard base64") from None


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Malformed(f"{what} is not an integer")
    return value


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(f"{what} is not an object")
    return value


def verify_bundle(
    bundle: Any, public_key: bytes | None = None, trusted: CheckpointFile | None = None
) -> Verdict:
    """Check everything the bundle claims; `public_key` pins the signer's raw
    32-byte Ed25519 key, `trusted` is a checkpoint the auditor kept."""
    verdict = Verdict(key_pinned=public_key is not None)
    try:
        _verify(bundle, public_key, trusted, verdict)
    except Malformed as exc:
        verdict.fail(f"malformed bundle: {exc}")
    return verdict


def _verify(
    bundle: Any, pinned: bytes | None, trusted: CheckpointFile | None, verdict: Verdict
) -> None:
    body = _object(bundle, "the bundle")
    rid = body.get("relationship_id")
    try:
        relationship_id = str(UUID(rid)) if isinstance(rid, str) else None
    except ValueError:
        relationship_id = None
    if relationship_id is None:
        raise Malformed("relationship_id is not a UUID")
    verdict.relationship_id = relationship_id
    checkpoint = _object(body.get("checkpoint"), "checkpoint")
    note = checkpoint.get("note")
    key_name = checkpoint.get("key_name")
    if not isinstance(note, str) or not isinstance(key_name, str):
        raise Malformed("checkpoint.note and checkpoint.key_name must be text")
    verdict.key_name = key_name
    bundled_key = _b64(checkpoint.get("public_key"), "checkpoint.public_key")
    key = pinned if pinned is not None else bundled_key
    if len(key) != 32:
        raise Malformed("the public key is not 32 bytes")
    verdict.key_id = key_id(key_name, key).hex()
    if pinned is not None and bundled_key != pinned:
        verdict.fail("the bundle's checkpoint names another public key than the pinned one")
    signed = _signed_checkpoint(note, key_name, key, verdict)
    if signed is None:
        return
    origin, size, root = signed.origin, signed.tree_size, signed.root_hash
    verdict.origin, verdict.tree_size = origin, size
    if checkpoint.get("tree_size") != size:
        verdict.fail("checkpoint.tree_size differs from the signed note")
    if checkpoint.get("origin") != origin:
        verdict.fail("checkpoint.origin differs from the signed note")
    if _b64(checkpoint.get("root_hash"), "checkpoint.root_hash") != root:
        verdict.fail("checkpoint.root_hash differs from the signed note")
    events = body.get("events")
    if not isinstance(events, list) or not events:
        raise Malformed("events is not a non-empty list")
    _verify_events(events, relationship_id, size, root, verdict)
    consistency = body.get("consistency")
    if trusted is not None:
        _verify_trusted(trusted, key, origin, size, root, consistency, verdict)


def _signed_checkpoint(note: str, key_name: str, key: bytes, verdict: Verdict) -> Any:
    try:
        text = verify(note, key_name, key)
    except NoteError as exc:
        verdict.fail(f"checkpoint signature: {exc}")
        return None
    except ValueError as exc:  # a public key the curve refuses
        verdict.fail(f"checkpoint signature: unusable public key ({exc})")
        return None
    try:
        return parse_checkpoint(text)
    except NoteError as exc:
        verdict.fail(f"checkpoint: {exc}")
        return None


def _verify_events(
    events: Sequence[Any], relationship_id: str, size: int, root: bytes, verdict: Verdict
) -> None:
    previous_chain = b""
    previous_position = 0
    for expected_version, raw in enumerate(events, start=1):
        entry = _object(raw, f"events[{expected_version - 1}]")
        where = f"version {expected_version}"
        version = _int(entry.get("version"), f"{where}: version")
        position = _int(entry.get("position"), f"{where}: position")
        canonical = _b64(entry.get("canonical"), f"{where}: canonical")
        chain_hash = _b64(entry.get("chain_hash"), f"{where}: chain_hash")
        path_raw = entry.get("audit_path")
        if not isinstance(path_raw, list):
            raise Malformed(f"{where}: audit_path is not a list")
        path = [_b64(node, f"{where}: audit_path") for node in path_raw]
        event = _object(entry.get("event"), f"{where}: event")
        verdict.events_checked += 1
        if version != expected_version:
            verdict.fail(
                f"version {expected_version}: missing or out of order (found version {version})"
            )
        if position <= previous_position:
            verdict.fail(f"{where}: position {position} does not follow {previous_position}")
        previous_position = max(previous_position, position)
        # the chain, from version 1
        previous_chain = hashlib.sha256(previous_chain + canonical).digest()
        if previous_chain != chain_hash:
            verdict.fail(f"{where}: chain hash does not match SHA-256(previous || canonical)")
            previous_chain = chain_hash  # go on from what the bundle claims
        _check_fields(canonical, entry, event, relationship_id, where, verdict)
        # inclusion in the signed tree
        if not 1 <= position <= size:
            verdict.fail(f"{where}: position {position} is outside the checkpoint's tree")
        elif not merkle.verify_inclusion(
            position - 1, size, merkle.leaf_hash(canonical), path, root
        ):
            verdict.fail(f"{where}: not included in the checkpoint (audit path does not verify)")


def _check_fields(
    canonical: bytes,
    entry: Mapping[str, Any],
    event: Mapping[str, Any],
    relationship_id: str,
    where: str,
    verdict: Verdict,
) -> None:
    try:
        fields = parse_canonical(canonical)
    except Malformed as exc:
        verdict.fail(f"{where}: {exc}")
        return
    claims = {
        "position": (fields.position, entry.get("position"), event.get("position")),
        "version": (fields.version, entry.get("version"), event.get("version")),
        "relationship id": (fields.stream_id, relationship_id, event.get("relationship_id")),
        "event id": (fields.event_id, event.get("id"), event.get("id")),
        "type": (fields.metadata.get("type"), event.get("type"), event.get("type")),
    }
    for name, (recorded, *claimed) in claims.items():
        if any(value != recorded for value in claimed):
            verdict.fail(f"{where}: the canonical bytes say {name} {recorded!r}, the bundle says"
                         f" {claimed[-1]!r}")  # fmt: skip
    _check_envelope(fields.metadata, event, where, verdict)
    recorded_at = event.get("recorded_at")
    moment = None
    if isinstance(recorded_at, str):
        try:
            moment = datetime.fromisoformat(recorded_at)
        except ValueError:
            moment = None
    if moment is None or moment.tzinfo is None or _micros(moment) != fields.recorded_at_us:
        verdict.fail(f"{where}: recorded_at differs from the canonical bytes")


ENVELOPE = ("actor", "source", "correlation_id", "causation_id", "from_phase", "to_phase")


def _check_envelope(
    metadata: Mapping[str, Any], event: Mapping[str, Any], where: str, verdict: Verdict
) -> None:
    """The envelope the event shows is the one the canonical bytes hold (the
    phases only where the event shows them: on a phase change)."""
    for name in ENVELOPE:
        if name in event and event[name] != metadata.get(name):
            verdict.fail(f"{where}: {name} differs from the canonical bytes")
    shown, stored = event.get("occurred_at"), metadata.get("occurred_at")
    if (shown is not None or stored is not None) and (
        _moment(shown) is None or _moment(shown) != _moment(stored)
    ):
        verdict.fail(f"{where}: occurred_at differs from the canonical bytes")


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _micros(moment: datetime) -> int:
    delta = moment - datetime.fromtimestamp(0, moment.tzinfo)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _verify_trusted(
    trusted: CheckpointFile,
    key: bytes,
    origin: str,
    size: int,
    root: bytes,
    consistency: Any,
    verdict: Verdict,
) -> None:
    verdict.trusted_size = trusted.checkpoint.tree_size
    if trusted.public_key is not None and trusted.public_key != key:
        verdict.fail("the trusted checkpoint names another public key than the bundle's signer")
    try:
        verify(trusted.note, trusted.key_name, key)
    except (NoteError, ValueError) as exc:
        verdict.fail(f"trusted checkpoint signature: {exc}")
        return
    kept = trusted.checkpoint
    if kept.origin != origin:
        verdict.fail(f"the trusted checkpoint is of another log ({kept.origin!r})")
        return
    if kept.tree_size == 0:  # the empty tree: every log extends it
        if kept.root_hash != merkle.EMPTY_ROOT:
            verdict.fail("the trusted checkpoint of size 0 does not have the empty tree's root")
        return
    if kept.tree_size == size:
        if kept.root_hash != root:
            verdict.fail(
                f"the trusted checkpoint and the bundle's have one size ({size}) and two roots:"
                " the log was rewritten"
            )
        return
    if consistency is None:
        verdict.fail(
            f"the trusted checkpoint has size {kept.tree_size}, the bundle's {size}, and the"
            " bundle carries no consistency proof (export it with --since-checkpoint)"
        )
        return
    proof = _object(consistency, "consistency")
    first, second = sorted((kept.tree_size, size))
    if (proof.get("first"), proof.get("second")) != (first, second):
        verdict.fail(f"the consistency proof is between other sizes than {first} and {second}")
        return
    nodes = proof.get("proof")
    if not isinstance(nodes, list):
        raise Malformed("consistency.proof is not a list")
    hashes = [_b64(node, "consistency.proof") for node in nodes]
    roots = {kept.tree_size: kept.root_hash, size: root}
    if not merkle.verify_consistency(first, second, roots[first], roots[second], hashes):
        verdict.fail(
            f"the tree of size {second} does not extend the tree of size {first}:"
            " the consistency proof fails (the log was rewritten)"
        )

"""An evidence-bundle verifier written from docs/verification.md alone.

It shares no code with Mentorflow (only the Python standard library and
`cryptography`), so that the documentation, not the implementation, is what
it checks bundles against. `problems(bundle, public_key)` lists every check
that fails; an empty list means the bundle is valid.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

SEPARATOR = b"\x1f"
DASH = "\u2014"


def b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_hash(data: bytes) -> bytes:
    return sha256(b"\x00" + data)


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def key_id(name: str, public_key: bytes) -> bytes:
    return sha256(name.encode() + b"\n" + b"\x01" + public_key)[:4]


def root_from_audit_path(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes | None:
    """RFC 9162 §2.1.3.2, step by step."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn //= 2
                    sn //= 2
        else:
            r = node_hash(r, p)
        fn //= 2
        sn //= 2
    return r if sn == 0 else None


def consistent(first: int, second: int, root1: bytes, root2: bytes, proof: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2, step by step."""
    if first == second:
        return not proof and root1 == root2
    if not 0 < first < second or not proof:
        return False
    if first & (first - 1) == 0:
        proof = [root1, *proof]
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn //= 2
        sn //= 2
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn //= 2
                    sn //= 2
        else:
            sr = node_hash(sr, c)
        fn //= 2
        sn //= 2
    return sn == 0 and fr == root1 and sr == root2


def signed_checkpoint(note: str, public_key: bytes) -> tuple[str, int, bytes] | None:
    """(origin, tree size, root) if the note carries a good signature by this key."""
    text, _, signatures = note.partition("\n\n")
    text += "\n"
    for line in signatures.strip("\n").split("\n"):
        dash, name, blob = line.split(" ")
        raw = b64(blob)
        if dash != DASH or raw[:4] != key_id(name, public_key):
            continue
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(raw[4:], text.encode())
        except InvalidSignature:
            return None
        origin, size, root, _ = text.split("\n", 3)
        return origin, int(size), b64(root)
    return None


def micros(iso: str) -> int:
    moment = datetime.fromisoformat(iso)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def problems(
    bundle: dict[str, Any], public_key: bytes, trusted: dict[str, Any] | None = None
) -> list[str]:
    found: list[str] = []
    checkpoint = bundle["checkpoint"]
    signed = signed_checkpoint(checkpoint["note"], public_key)
    if signed is None:
        return ["the checkpoint is not signed by the key"]
    origin, size, root = signed
    if (checkpoint["origin"], checkpoint["tree_size"], b64(checkpoint["root_hash"])) != signed:
        found.append("the checkpoint's fields differ from its signed note")
    chain = b""
    for expected, entry in enumerate(bundle["events"], start=1):
        canonical = b64(entry["canonical"])
        event = entry["event"]
        if entry["version"] != expected:
            found.append(f"version {expected} missing")
        chain = sha256(chain + canonical)
        if chain != b64(entry["chain_hash"]):
            found.append(f"version {expected}: chain hash")
        fields = canonical.split(SEPARATOR, 7)
        position, stream, version, event_id, _topic, metadata, recorded = (
            f.decode() for f in fields[:7]
        )
        if (int(position), int(version)) != (entry["position"], entry["version"]):
            found.append(f"version {expected}: canonical position or version")
        if stream != bundle["relationship_id"] or stream != event["relationship_id"]:
            found.append(f"version {expected}: canonical relationship id")
        if event_id != event["id"] or json.loads(metadata).get("type") != event["type"]:
            found.append(f"version {expected}: canonical event id or type")
        if int(recorded) != micros(event["recorded_at"]):
            found.append(f"version {expected}: canonical recorded_at")
        path = [b64(p) for p in entry["audit_path"]]
        computed = root_from_audit_path(entry["position"] - 1, size, leaf_hash(canonical), path)
        if computed != root:
            found.append(f"version {expected}: audit path does not lead to the signed root")
    if trusted is not None:
        kept = signed_checkpoint(trusted["note"], public_key)
        if kept is None or kept[0] != origin:
            found.append("the trusted checkpoint is not this log's, signed by this key")
        elif kept[1] == size:
            if kept[2] != root:
                found.append("same size as the trusted checkpoint, another root")
        else:
            proof = bundle.get("consistency") or {}
            (first, r1), (second, r2) = sorted([(kept[1], kept[2]), (size, root)])
            if (proof.get("first"), proof.get("second")) != (first, second) or not consistent(
                first, second, r1, r2, [b64(p) for p in proof.get("proof", [])]
            ):
                found.append("no valid consistency proof to the trusted checkpoint")
    return found

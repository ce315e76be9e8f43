"""Checkpoints as C2SP `tlog-checkpoint` notes, signed per C2SP `signed-note` with Ed25519.

The format is the one transparency-log witnesses already read, so an auditor's
existing tools can check Mentorflow's checkpoints; nothing here is our own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SIGNATURE_TYPE_ED25519 = b"\x01"
EM_DASH = "\u2014"


class NoteError(ValueError):
    """A note or checkpoint that is malformed or not signed by the expected key."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes
    text: str
    """The signed part: the three checkpoint lines, each ending in a newline."""


def checkpoint_text(origin: str, tree_size: int, root_hash: bytes) -> str:
    if not origin or any(c.isspace() and c != " " for c in origin) or origin != origin.strip():
        raise NoteError(f"unusable origin {origin!r}")
    return f"{origin}\n{tree_size}\n{base64.b64encode(root_hash).decode()}\n"


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(key_name: str, public_key: bytes) -> bytes:
    """The first four bytes of SHA-256(name || 0x0A || 0x01 || key), as signed-note defines it."""
    material = key_name.encode() + b"\n" + SIGNATURE_TYPE_ED25519 + public_key
    return hashlib.sha256(material).digest()[:4]


def _check_key_name(key_name: str) -> None:
    if not key_name or "+" in key_name or any(c.isspace() for c in key_name):
        raise NoteError(f"a key name has no spaces or '+': {key_name!r}")


def sign(text: str, key_name: str, private_key: Ed25519PrivateKey) -> str:
    """The note: its text, a blank line, and one signature line."""
    _check_key_name(key_name)
    if not text.endswith("\n"):
        raise NoteError("a note's text ends with a newline")
    public = raw_public_key(private_key.public_key())
    signature = private_key.sign(text.encode())
    blob = base64.b64encode(key_id(key_name, public) + signature).decode()
    return f"{text}\n{EM_DASH} {key_name} {blob}\n"


def split(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """The signed text and its signature lines as (key name, key id, signature)."""
    text, sep, rest = note.rpartition("\n\n")
    if not sep or not rest.endswith("\n"):
        raise NoteError("not a signed note: no blank line before signatures")
    signatures: list[tuple[str, bytes, bytes]] = []
    for line in rest[:-1].split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != EM_DASH:
            raise NoteError(f"malformed signature line {line!r}")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except binascii.Error as exc:
            raise NoteError("signature is not base64") from exc
        if len(blob) < 5:
            raise NoteError("signature too short")
        signatures.append((parts[1], blob[:4], blob[4:]))
    return text + "\n", signatures


def verify(note: str, key_name: str, public_key: bytes) -> str:
    """The note's text, if a signature by (key_name, public_key) over it checks out."""
    text, signatures = split(note)
    wanted = key_id(key_name, public_key)
    verifier = Ed25519PublicKey.from_public_bytes(public_key)
    for name, kid, signature in signatures:
        if name == key_name and kid == wanted:
            try:
                verifier.verify(signature, text.encode())
            except InvalidSignature as exc:
                raise NoteError(f"the signature by {key_name} does not verify") from exc
            return text
    raise NoteError(f"no signature by {key_name} (key id {wanted.hex()})")


def parse_checkpoint(text: str) -> Checkpoint:
    """The origin, size and root of a checkpoint's signed text (extension lines allowed)."""
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise NoteError("a checkpoint has origin, size and root lines")
    origin, size, root = lines[0], lines[1], lines[2]
    if not size.isdigit() or (size != "0" and size.startswith("0")):
        raise NoteError(f"bad tree size {size!r}")
    try:
        root_hash = base64.b64decode(root, validate=True)
    except binascii.Error as exc:
        raise NoteError("root hash is not base64") from exc
    if len(root_hash) != 32:
        raise NoteError("root hash is not 32 bytes")
    return Checkpoint(origin, int(size), root_hash, text)


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint an auditor kept: the signed note, what it commits to, and the
    key it names (the public key only when the file carried one)."""

    note: str
    checkpoint: Checkpoint
    key_name: str
    public_key: bytes | None


def read_checkpoint_file(content: str) -> CheckpointFile:
    """Read either the JSON that `GET /v1/checkpoints/...` answers or the bare signed
    note; the signature is not checked here (the caller decides which key to trust)."""
    public_key: bytes | None = None
    text = content
    if content.lstrip().startswith("{"):
        try:
            body = json.loads(content)
            text = body["note"]
            if body.get("public_key") is not None:
                public_key = base64.b64decode(body["public_key"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise NoteError(f"not a checkpoint: {exc}") from exc
        if not isinstance(text, str):
            raise NoteError("not a checkpoint: note is not text")
    signed, signatures = split(text)
    if not signatures:
        raise NoteError("the checkpoint is not signed")
    return CheckpointFile(text, parse_checkpoint(signed), signatures[0][0], public_key)

"""`mentorflow evidence export` and `mentorflow evidence verify`.

`export` writes a relationship's evidence bundle (the admin's view of its
events), as `GET /v1/relationships/{id}/evidence` answers it; with
`--since-checkpoint FILE` the bundle also carries a consistency proof between
that checkpoint's tree and the bundle's, so that `verify --trusted-checkpoint`
can check, offline, that the log it came from extends the one you kept.

`verify` needs no database and no settings: it reads the bundle, and checks
it with domain.verifiable.evidence. Exit 0: valid; 1: invalid (each failed
check named); 2: usage (a file that cannot be read, a key that is not one).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import sys
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from domain.verifiable.evidence import Verdict, verify_bundle
from domain.verifiable.note import CheckpointFile, NoteError, raw_public_key, read_checkpoint_file
from service.auditor.common import NO, OK, USAGE, Format, components_for, parse_id
from service.http.checkpoint_routes import evidence_view
from service.platform.settings import Settings
from service.verifiable.checkpoints import Checkpoints
from service.verifiable.evidence import EvidenceRefused
from service.verifiable.signing_key import key_path


def add_parser(commands: Any) -> None:
    """The `evidence` command and its two subcommands (service.cli)."""
    evidence = commands.add_parser("evidence", help="export or verify evidence bundles")
    sub = evidence.add_subparsers(dest="evidence_command", required=True)
    export = sub.add_parser("export", help="write a relationship's evidence bundle")
    export.add_argument("relationship_id")
    export.add_argument("--out", help="write to this file (default: standard output)")
    export.add_argument(
        "--since-checkpoint",
        dest="since_checkpoint",
        metavar="FILE",
        help="a checkpoint you kept: embed a consistency proof from its tree to the bundle's",
    )
    export.add_argument(
        "--tree-size", dest="tree_size", type=int, help="use the stored checkpoint of this size"
    )
    check = sub.add_parser("verify", help="check a bundle offline (no database)")
    check.add_argument("file")
    check.add_argument(
        "--public-key",
        dest="public_key",
        metavar="KEY",
        help="the signer's key: a PEM file, or the base64 of the 32-byte Ed25519 key",
    )
    check.add_argument(
        "--trusted-checkpoint",
        dest="trusted_checkpoint",
        metavar="FILE",
        help="a checkpoint kept elsewhere (the JSON of GET /v1/checkpoints/... or the note)",
    )
    check.add_argument("--format", choices=("text", "json"), default="text")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Dispatch from service.cli (synchronous: verify starts no event loop)."""
    if args.evidence_command == "verify":
        return verify(args.file, args.public_key, args.trusted_checkpoint, fmt=args.format)
    return asyncio.run(
        export(
            settings,
            args.relationship_id,
            out_path=args.out,
            since_checkpoint=args.since_checkpoint,
            tree_size=args.tree_size,
        )
    )


# --- export ------------------------------------------------------------------------


async def export(
    settings: Settings,
    relationship_id: str | UUID,
    *,
    out_path: str | None = None,
    since_checkpoint: str | None = None,
    tree_size: int | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    rid = parse_id(relationship_id, err)
    if rid is None:
        return USAGE
    since = None
    if since_checkpoint is not None:
        kept = _read_checkpoint(since_checkpoint, err)
        if kept is None:
            return USAGE
        since = kept.checkpoint.tree_size
        if since == 0:
            since = None  # the empty tree: every tree extends it
    async with components_for(settings) as session:
        view = evidence_view(session, redacted=False)
        try:
            may_publish = await _may_sign(settings, session.checkpoints)
            bundle = await session.evidence.bundle(
                rid, view, tree_size=tree_size, since=since, may_publish=may_publish
            )
        except EvidenceRefused as exc:
            print(f"mentorflow: {exc}", file=err)
            return NO
    if bundle is None:
        print(f"mentorflow: no relationship {rid}", file=err)
        return NO
    text = json.dumps(bundle, indent=2) + "\n"
    if out_path is None:
        out.write(text)
    else:
        try:
            await asyncio.to_thread(Path(out_path).write_text, text, encoding="utf-8")
        except OSError as exc:
            print(f"mentorflow: cannot write {out_path}: {exc.strerror or exc}", file=err)
            return USAGE
        print(
            f"wrote the evidence of relationship {rid} ({len(bundle['events'])} events,"
            f" checkpoint of tree size {bundle['checkpoint']['tree_size']}) to {out_path}",
            file=err,
        )
    return OK


async def _may_sign(settings: Settings, checkpoints: Checkpoints) -> bool:
    """Only a process that has the service's key may publish a checkpoint to
    cover the relationship: the command never creates a key of its own, and
    never signs with a key other than the one that signed the latest checkpoint."""
    if not key_path(settings).exists():
        return False
    latest = await checkpoints.latest()
    return latest is None or latest.public_key == checkpoints.signing_key().public_key


# --- verify ------------------------------------------------------------------------


def verify(
    path: str,
    public_key: str | None = None,
    trusted_checkpoint: str | None = None,
    *,
    fmt: Format = "text",
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        print(f"mentorflow: cannot read {path}: {exc.strerror or exc}", file=err)
        return USAGE
    pinned: bytes | None = None
    if public_key is not None:
        try:
            pinned = parse_public_key(public_key)
        except ValueError as exc:
            print(f"mentorflow: --public-key: {exc}", file=err)
            return USAGE
    trusted = None
    if trusted_checkpoint is not None:
        trusted = _read_checkpoint(trusted_checkpoint, err)
        if trusted is None:
            return USAGE
    try:
        bundle = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        verdict = Verdict(key_pinned=pinned is not None)
        verdict.fail(f"not a bundle: the file is not JSON ({str(exc)[:200]})")
    else:
        verdict = verify_bundle(bundle, pinned, trusted)
    _report(verdict, fmt, out)
    return OK if verdict.valid else NO


def _report(verdict: Verdict, fmt: Format, out: TextIO) -> None:
    if fmt == "json":
        print(json.dumps(verdict.to_dict(), indent=2), file=out)
        return
    subject = (
        f"relationship {verdict.relationship_id}: {verdict.events_checked} events,"
        f" checkpoint {verdict.origin} tree size {verdict.tree_size},"
        f" key {verdict.key_name} (key id {verdict.key_id})"
    )
    if not verdict.key_pinned:
        print(
            "warning: the public key was not pinned: the bundle's own key was used, which"
            " proves only that the bundle is consistent with itself (pass --public-key)",
            file=out,
        )
    if verdict.valid:
        trusted = (
            f"; consistent with the trusted checkpoint of tree size {verdict.trusted_size}"
            if verdict.trusted_size is not None
            else ""
        )
        print(f"VALID: {subject}{trusted}", file=out)
        return
    print(f"INVALID: {subject}", file=out)
    for failure in verdict.failures:
        print(f"  - {failure}", file=out)


def parse_public_key(value: str) -> bytes:
    """A PEM file (public key, or the private key itself), or the base64 of
    the raw 32-byte key; the raw key."""
    candidate = Path(value)
    text = value
    if candidate.is_file():
        try:
            text = candidate.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read {value}: {exc}") from None
    if "-----BEGIN" in text:
        return _pem_key(text.encode())
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("neither a PEM file nor base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this is {len(raw)}")
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise ValueError(f"not an Ed25519 public key: {exc}") from None
    return raw


def _pem_key(data: bytes) -> bytes:
    try:
        if b"PRIVATE KEY" in data:
            private = load_pem_private_key(data, password=None)
            if isinstance(private, Ed25519PrivateKey):
                return raw_public_key(private.public_key())
            raise ValueError("the PEM key is not an Ed25519 key")
        public = load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"unreadable PEM key: {exc}") from None
    if not isinstance(public, Ed25519PublicKey):
        raise ValueError("the PEM key is not an Ed25519 key")
    return raw_public_key(public)


def _read_checkpoint(path: str, err: TextIO) -> CheckpointFile | None:
    try:
        content = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"mentorflow: cannot read the checkpoint {path}: {exc}", file=err)
        return None
    try:
        return read_checkpoint_file(content)
    except (NoteError, RecursionError) as exc:
        print(f"mentorflow: {path} is not a checkpoint: {exc}", file=err)
        return None

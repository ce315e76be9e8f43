"""The Ed25519 key that signs checkpoints: a file outside the database.

`MENTORFLOW_SIGNING_KEY` names a PKCS#8 PEM file; without it the key is
`<data dir>/signing-key.pem`, created on first start with mode 0600. Creation
is atomic and safe when two processes start at once: each writes a complete
key to a private temporary file and links it into place; `link` never
replaces an existing file, so the first process wins and the other reads the
winner's key. The key is never written to the database: someone who can
rewrite the database must not be able to sign a checkpoint for it.
"""

from __future__ import annotations

import base64
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from domain.verifiable.note import raw_public_key
from service.platform.settings import Settings, SettingsError

log = logging.getLogger(__name__)

DEFAULT_FILE = "signing-key.pem"


class SigningKeyError(SettingsError):
    """The signing key cannot be read or created; the message names the file
    (a setting's problem: the process does not start, exit status 2)."""


@dataclass(frozen=True)
class SigningKey:
    private_key: Ed25519PrivateKey = field(repr=False)
    path: Path

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return raw_public_key(self.private_key.public_key())

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self.public_key).decode()

    @property
    def public_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )


def key_path(settings: Settings) -> Path:
    return settings.signing_key_path or settings.data_dir / DEFAULT_FILE


def load_signing_key(settings: Settings) -> SigningKey:
    """The configured key; the default file is created when it does not exist
    yet (a configured `MENTORFLOW_SIGNING_KEY` must exist)."""
    path = key_path(settings)
    if settings.signing_key_path is None and not path.exists():
        create_key_file(path)
    return SigningKey(read_key_file(path), path)


def read_key_file(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(
            f"cannot read the signing key {path} (MENTORFLOW_SIGNING_KEY): {exc.strerror or exc}"
        ) from None
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(
            f"{path} is not an unencrypted PEM (PKCS#8) private key: {exc}"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "the signing key file can be read by others; chmod 600 it",
            extra={"path": str(path), "mode": oct(mode & 0o777)},
        )
    return key


def create_key_file(path: Path) -> None:
    """Write a new key to `path` unless a file is there already (atomic)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SigningKeyError(f"cannot create {path.parent}: {exc.strerror or exc}") from None
    pem = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
            log.info("created a checkpoint signing key", extra={"path": str(path)})
        except FileExistsError:
            pass  # another process was first: its key is the key
    finally:
        temporary.unlink(missing_ok=True)

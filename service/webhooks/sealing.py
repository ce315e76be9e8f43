"""Webhook secrets at rest.

A signing secret cannot be stored as a hash, as API tokens are: the
dispatcher needs it in clear to sign every delivery. So when the deployment
has ``MENTORFLOW_CIPHER_KEY`` (the key event payloads are encrypted with),
secrets are stored AES-GCM-encrypted under it, and a copy of the table (a
backup, a replica, a DBA's query) does not let anyone forge deliveries.
Without a key they are stored as given, as the payloads are.

The same sealer keeps stored idempotent responses (service.http.idempotency)
unreadable without the key: they may hold confidential fields.

Sealed values carry a prefix, so rows written before a key was set still
read, and a sealed secret read without the key fails with a clear error
instead of signing with garbage.
"""

from __future__ import annotations

import base64

from eventsourcing.cryptography import AESCipher
from eventsourcing.utils import Environment

SEALED_PREFIX = "aes-gcm:"


class SecretUnavailable(RuntimeError):
    """A stored secret is sealed and this process has no key (or another key)."""


class SecretSealer:
    """Seals secrets before they are stored and opens them after they are read;
    `what` names them in errors."""

    def __init__(self, cipher_key: str | None, what: str = "a webhook secret") -> None:
        self.what = what
        self._cipher = (
            AESCipher(Environment(env={AESCipher.CIPHER_KEY: cipher_key})) if cipher_key else None
        )

    def seal(self, secret: str) -> str:
        if self._cipher is None:
            return secret
        return SEALED_PREFIX + base64.b64encode(self._cipher.encrypt(secret.encode())).decode()

    def open(self, stored: str) -> str:
        if not stored.startswith(SEALED_PREFIX):
            return stored
        if self._cipher is None:
            raise SecretUnavailable(f"{self.what} is encrypted: set MENTORFLOW_CIPHER_KEY")
        try:
            sealed = base64.b64decode(stored.removeprefix(SEALED_PREFIX))
            return self._cipher.decrypt(sealed).decode()
        except ValueError as exc:  # a wrong key fails authentication
            raise SecretUnavailable(f"{self.what} does not decrypt: {exc}") from exc


PLAIN = SecretSealer(None)
"""Stores secrets as given (no MENTORFLOW_CIPHER_KEY)."""
